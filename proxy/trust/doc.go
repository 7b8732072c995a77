// Package trust verifies, offline, the signatures and attestations of an image manifest
// with sigstore-go: cosign's legacy layout (a simple-signing payload in a
// sha256-<hex>.sig tag, DSSE attestations in a .att tag) and Sigstore bundles attached as
// referrers; signed with a public key (ECDSA, Ed25519, RSA) or keylessly (a Fulcio
// certificate checked at signing time against a trusted_root.json, with its Rekor entry,
// signed timestamps and SCTs).
//
// On the pull path it sits between the mirror, which stores the signature manifests and
// blobs with the image, and the policy: Extract turns stored artifacts into Material (a
// fact of the digest, kept with the scan's facts), and Verify turns Material into
// policy.Trust for the keys of the policy judging one request.
//
// It never makes a network call (no TUF refresh, no Rekor or Fulcio query), never reads
// an image layer, and never decides: an identity is matched to the policy by policy/.
// Whatever fails to verify is reported with the reason, never silently dropped.
package trust
