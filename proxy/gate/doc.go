// Package gate decides whether a manifest may be served, for one request. It scans
// every new image digest once (however many pulls, on however many replicas sharing the
// store, wait for it: the replica holding its claim scans) into facts about the
// content — OS, packages, vulnerabilities, user, executables — that never depend on who
// asked, and judges those facts per request with the policy, the repository and the
// reference asked for, and the time. It keeps the facts, records the judgements per
// (repository, digest), re-evaluates them when the vulnerability DB or the policy
// changes, rescans what a restart interrupted and tells webhooks about flips.
//
// It never serves a byte and never speaks HTTP to clients; it never decides whether to
// scan from one field the upstream controls; and it fails closed: a scan that failed,
// timed out or could not run is a denial, never an allowance.
package gate
