package trust

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// legacy is cosign's legacy layout (a .sig or .att layer and its annotations) as a
// sigstore-go signed entity, so one verifier checks it and bundles alike — as cosign v2
// does when it verifies a legacy signature with sigstore-go's rules.
type legacy struct {
	vc      verify.VerificationContent
	sc      verify.SignatureContent
	entries []*tlog.Entry
	stamps  [][]byte
}

var _ verify.SignedEntity = (*legacy)(nil)

func (l *legacy) HasInclusionPromise() bool { return len(l.entries) > 0 }
func (l *legacy) HasInclusionProof() bool   { return false }
func (l *legacy) Version() (string, error)  { return "v0.1", nil }
func (l *legacy) Timestamps() ([][]byte, error) {
	return l.stamps, nil
}
func (l *legacy) TlogEntries() ([]*tlog.Entry, error) { return l.entries, nil }
func (l *legacy) VerificationContent() (verify.VerificationContent, error) {
	return l.vc, nil
}
func (l *legacy) SignatureContent() (verify.SignatureContent, error) { return l.sc, nil }

// rekorBundle is cosign's dev.sigstore.cosign/bundle annotation.
type rekorBundle struct {
	SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	} `json:"Payload"`
}

func newLegacy(m Material) (*legacy, error) {
	l := &legacy{}
	switch m.Kind {
	case KindSignature:
		sig, err := base64.StdEncoding.DecodeString(m.Signature)
		if err != nil {
			return nil, fmt.Errorf("the signature annotation is not base64: %w", err)
		}
		sum := sha256.Sum256(m.Payload)
		l.sc = bundle.NewMessageSignature(sum[:], "SHA2_256", sig)
	case KindAttestation:
		var env dsse.Envelope
		if err := json.Unmarshal(m.Payload, &env); err != nil {
			return nil, fmt.Errorf("unreadable DSSE envelope: %w", err)
		}
		if len(env.Signatures) == 0 {
			return nil, fmt.Errorf("the DSSE envelope has no signature")
		}
		l.sc = &bundle.Envelope{Envelope: &env}
	}
	if m.Certificate != "" {
		certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(m.Certificate))
		if err != nil || len(certs) == 0 {
			return nil, fmt.Errorf("unreadable certificate annotation: %v", err)
		}
		l.vc = bundle.NewCertificate(certs[0])
	} else {
		l.vc = &bundle.PublicKey{}
	}
	if len(m.Rekor) > 0 {
		var rb rekorBundle
		if err := json.Unmarshal(m.Rekor, &rb); err != nil {
			return nil, fmt.Errorf("unreadable Rekor bundle annotation: %w", err)
		}
		body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
		if err != nil {
			return nil, fmt.Errorf("rekor bundle body is not base64: %w", err)
		}
		logID, err := hex.DecodeString(rb.Payload.LogID)
		if err != nil {
			return nil, fmt.Errorf("rekor bundle logID is not hex: %w", err)
		}
		e, err := tlog.NewEntry(body, rb.Payload.IntegratedTime, rb.Payload.LogIndex, logID, rb.SignedEntryTimestamp, nil)
		if err != nil {
			return nil, fmt.Errorf("rekor entry: %w", err)
		}
		l.entries = []*tlog.Entry{e}
	}
	if len(m.Timestamp) > 0 {
		var ts struct {
			SignedRFC3161Timestamp []byte `json:"SignedRFC3161Timestamp"`
		}
		if err := json.Unmarshal(m.Timestamp, &ts); err != nil {
			return nil, fmt.Errorf("unreadable timestamp annotation: %w", err)
		}
		l.stamps = [][]byte{ts.SignedRFC3161Timestamp}
	}
	return l, nil
}
