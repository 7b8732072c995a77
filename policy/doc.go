// Package policy turns what a scan found in an image into a verdict with reasons.
//
// It takes a plain Input (vulnerabilities and image facts) and returns a Verdict that
// says whether the image may be served, which rule decided, and the evidence. It knows
// nothing of HTTP, registries or Trivy, and never does I/O: the same Input always gives
// the same Verdict, so verdicts can be recomputed from stored scan results at any time.
package policy
