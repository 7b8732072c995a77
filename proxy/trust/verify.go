package trust

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/goldproxy/goldproxy/policy"
)

// cosignSignPredicate is the predicate type of a signature (not an attestation) made as
// a DSSE bundle by cosign sign --new-bundle-format.
const cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"

// Verifier checks signature material against public key files and a trusted root, both
// read from disk and re-read by Refresh when they change. It is safe for concurrent use.
type Verifier struct {
	rootPath    string
	requireSCT  bool
	requireTlog bool

	mu   sync.Mutex
	root *root.TrustedRoot
	// rootErr is why the trusted root could not be read; keyless signatures fail with it.
	rootErr   error
	rootStamp stamp
	keys      map[string]*key
	gen       int
	// cache keeps verification results: the same material, keys and trust material
	// (generation) always verify the same way, and verdicts are judged again often.
	cache resultCache
}

type cacheKey struct {
	gen      int
	subject  digest.Digest
	material string
	keys     string
}

type result struct {
	signer    policy.Signer
	statement *statement
	err       error
}

// resultCacheLimit bounds the cache; past it, it starts again empty.
const resultCacheLimit = 50_000

type resultCache struct {
	mu sync.Mutex
	m  map[cacheKey]result
}

func (c *resultCache) get(k cacheKey) (result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[k]
	return r, ok
}

func (c *resultCache) put(k cacheKey, r result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= resultCacheLimit {
		c.m = map[cacheKey]result{}
	}
	c.m[k] = r
}

type key struct {
	verifier    signature.Verifier
	fingerprint string
	err         error
	stamp       stamp
}

// stamp is what tells a file changed.
type stamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{fi.ModTime(), fi.Size()}
}

// Options configure a Verifier.
type Options struct {
	// TrustedRoot is a trusted_root.json ("" for none: keyless signatures then fail).
	TrustedRoot string
	// RequireSCT requires a Fulcio certificate to carry a signed certificate timestamp
	// from a CT log of the root.
	RequireSCT bool
	// RequireTlog requires a keyless signature to come with a Rekor entry (its SET or
	// inclusion proof); without it a signed timestamp from a TSA of the root suffices.
	RequireTlog bool
}

// New builds a Verifier; the trusted root, when one is named, must be readable.
func New(o Options) (*Verifier, error) {
	rootPath := o.TrustedRoot
	v := &Verifier{rootPath: rootPath, requireSCT: o.RequireSCT, requireTlog: o.RequireTlog, keys: map[string]*key{}}
	if rootPath != "" {
		v.loadRoot()
		if v.rootErr != nil {
			return nil, v.rootErr
		}
	}
	return v, nil
}

func (v *Verifier) loadRoot() {
	v.rootStamp = stampOf(v.rootPath)
	tr, err := root.NewTrustedRootFromPath(v.rootPath)
	if err != nil {
		v.root, v.rootErr = nil, fmt.Errorf("trusted root %s: %w", v.rootPath, err)
		return
	}
	v.root, v.rootErr = tr, nil
}

// Generation changes whenever a key file or the trusted root is read anew.
func (v *Verifier) Generation() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.gen
}

// Refresh re-reads the trusted root and the key files that changed on disk; it reports
// whether anything did (verdicts made with the old ones are then to be made again).
func (v *Verifier) Refresh() (changed bool, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.rootPath != "" && stampOf(v.rootPath) != v.rootStamp {
		v.loadRoot()
		changed, err = true, v.rootErr
	}
	for path, k := range v.keys {
		if stampOf(path) != k.stamp {
			delete(v.keys, path)
			changed = true
		}
	}
	if changed {
		v.gen++
	}
	return changed, err
}

// key loads a PEM public key file once (until Refresh sees it change).
func (v *Verifier) key(path string) *key {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[path]; ok {
		return k
	}
	k := &key{stamp: stampOf(path)}
	v.keys[path] = k
	b, err := os.ReadFile(path)
	if err != nil {
		k.err = fmt.Errorf("key %s: %w", path, err)
		return k
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		k.err = fmt.Errorf("key %s: not a PEM public key: %w", path, err)
		return k
	}
	if k.verifier, err = signature.LoadVerifier(pub, crypto.SHA256); err != nil {
		k.err = fmt.Errorf("key %s: %w", path, err)
		return k
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		k.err = fmt.Errorf("key %s: %w", path, err)
		return k
	}
	fp := sha256.Sum256(der)
	k.fingerprint = hex.EncodeToString(fp[:])
	return k
}

func (v *Verifier) trustedRoot() (*root.TrustedRoot, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.rootPath == "" {
		return nil, errors.New("no trusted root is configured (trust.trusted_root), so keyless signatures cannot be verified")
	}
	return v.root, v.rootErr
}

// Verify checks every piece of material of the manifest subject against the key files
// keys and the trusted root, and says who signed it, what is attested about it, and
// what did not verify.
func (v *Verifier) Verify(subject digest.Digest, mats []Material, keys []string) *policy.Trust {
	t := &policy.Trust{}
	gen := v.Generation()
	for _, m := range mats {
		ck := cacheKey{gen: gen, subject: subject, material: m.ID() + "\x00" + m.Via, keys: strings.Join(keys, "\x00")}
		r, ok := v.cache.get(ck)
		if !ok {
			r.signer, r.statement, r.err = v.verifyOne(subject, m, keys)
			v.cache.put(ck, r)
		}
		signer, statement, err := r.signer, r.statement, r.err
		what := describe(m)
		if err != nil {
			t.Problems = append(t.Problems, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		switch {
		case statement == nil || statement.PredicateType == cosignSignPredicate:
			t.Signers = append(t.Signers, signer)
		default:
			t.Attestations = append(t.Attestations, policy.Attestation{PredicateType: statement.PredicateType, BuilderID: statement.BuilderID, Signer: signer})
		}
	}
	return t
}

func describe(m Material) string {
	switch m.Kind {
	case KindSignature:
		return "cosign signature (" + m.Via + ")"
	case KindAttestation:
		return "cosign attestation (" + m.Via + ")"
	}
	return "sigstore bundle (" + m.Via + ")"
}

// statement is what Verify keeps of a verified in-toto statement.
type statement struct {
	PredicateType string
	BuilderID     string
}

// verifyOne verifies one piece of material for subject; a DSSE one returns its
// statement.
func (v *Verifier) verifyOne(subject digest.Digest, m Material, keys []string) (policy.Signer, *statement, error) {
	var (
		entity verify.SignedEntity
		// artifact is made anew for each attempt: WithArtifact consumes its reader.
		artifact func() verify.ArtifactPolicyOption
		err      error
	)
	sum, err := hex.DecodeString(subject.Encoded())
	if err != nil || subject.Algorithm() != digest.SHA256 {
		return policy.Signer{}, nil, fmt.Errorf("subject %s is not a sha256 digest", subject)
	}
	switch m.Kind {
	case KindSignature:
		if err := checkSimpleSigning(m.Payload, subject); err != nil {
			return policy.Signer{}, nil, err
		}
		entity, err = newLegacy(m)
		artifact = func() verify.ArtifactPolicyOption { return verify.WithArtifact(bytes.NewReader(m.Payload)) }
	case KindAttestation:
		entity, err = newLegacy(m)
		artifact = func() verify.ArtifactPolicyOption { return verify.WithArtifactDigest("sha256", sum) }
	case KindBundle:
		var b bundle.Bundle
		if err = b.UnmarshalJSON(m.Payload); err != nil {
			err = fmt.Errorf("unreadable bundle: %w", err)
		}
		entity = &b
		artifact = func() verify.ArtifactPolicyOption { return verify.WithArtifactDigest("sha256", sum) }
	default:
		err = fmt.Errorf("unknown material kind %q", m.Kind)
	}
	if err != nil {
		return policy.Signer{}, nil, err
	}
	vc, err := entity.VerificationContent()
	if err != nil {
		return policy.Signer{}, nil, err
	}
	var res *verify.VerificationResult
	var signer policy.Signer
	if vc.Certificate() != nil {
		res, err = v.verifyKeyless(entity, artifact)
		if err != nil {
			return signer, nil, err
		}
		signer.Identity = res.Signature.Certificate.SubjectAlternativeName
		signer.Issuer = res.Signature.Certificate.Extensions.Issuer
	} else {
		res, signer, err = v.verifyKeyed(entity, artifact, keys)
		if err != nil {
			return signer, nil, err
		}
	}
	signer.Via = m.Via
	for _, ts := range res.VerifiedTimestamps {
		if ts.Type != "Tlog" {
			continue
		}
		if entries, err := entity.TlogEntries(); err == nil && len(entries) > 0 {
			i := entries[0].LogIndex()
			signer.LogIndex, signer.IntegratedTime = &i, entries[0].IntegratedTime().UTC()
		}
		break
	}
	if res.Statement == nil {
		return signer, nil, nil
	}
	return signer, &statement{PredicateType: res.Statement.GetPredicateType(), BuilderID: builderID(res.Statement.GetPredicate().AsMap())}, nil
}

func (v *Verifier) verifyKeyless(entity verify.SignedEntity, artifact func() verify.ArtifactPolicyOption) (*verify.VerificationResult, error) {
	tr, err := v.trustedRoot()
	if err != nil {
		return nil, err
	}
	// The signing time is a Rekor entry's integrated time or a TSA's signed timestamp;
	// a Rekor entry that comes with the signature is verified whether required or not.
	opts := []verify.VerifierOption{verify.WithObserverTimestamps(1)}
	if entries, _ := entity.TlogEntries(); v.requireTlog || len(entries) > 0 {
		opts = append(opts, verify.WithTransparencyLog(1))
	}
	if v.requireSCT {
		opts = append(opts, verify.WithSignedCertificateTimestamps(1))
	}
	sv, err := verify.NewVerifier(tr, opts...)
	if err != nil {
		return nil, err
	}
	// The identity is the policy's to match (policy.KeylessSigner): here the certificate
	// only has to chain to the root at signing time.
	return sv.Verify(entity, verify.NewPolicy(artifact(), verify.WithoutIdentitiesUnsafe()))
}

// verifyKeyed tries each key file in turn. With a trusted root, a Rekor entry the
// signature comes with is verified too (and a bad one fails); without one, it is ignored.
func (v *Verifier) verifyKeyed(entity verify.SignedEntity, artifact func() verify.ArtifactPolicyOption, keys []string) (*verify.VerificationResult, policy.Signer, error) {
	if len(keys) == 0 {
		return nil, policy.Signer{}, errors.New("signed with a key, and this policy lists no keys")
	}
	entries, _ := entity.TlogEntries()
	tr, _ := v.trustedRoot()
	var errs []string
	for _, path := range keys {
		k := v.key(path)
		if k.err != nil {
			errs = append(errs, k.err.Error())
			continue
		}
		km := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(k.verifier, time.Time{}, time.Time{}), nil
		})
		var tm root.TrustedMaterial = km
		opts := []verify.VerifierOption{verify.WithCurrentTime()}
		if len(entries) > 0 && tr != nil {
			tm = root.TrustedMaterialCollection{km, tr}
			opts = []verify.VerifierOption{verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1)}
		}
		sv, err := verify.NewVerifier(tm, opts...)
		if err != nil {
			return nil, policy.Signer{}, err
		}
		res, err := sv.Verify(entity, verify.NewPolicy(artifact(), verify.WithKey()))
		if err == nil {
			return res, policy.Signer{Key: path, Fingerprint: k.fingerprint}, nil
		}
		errs = append(errs, fmt.Sprintf("key %s (sha256:%.16s): %v", path, k.fingerprint, err))
	}
	return nil, policy.Signer{}, fmt.Errorf("not signed by a key this policy lists: %s", strings.Join(errs, "; "))
}

// checkSimpleSigning checks that a cosign simple-signing payload is for subject.
func checkSimpleSigning(payload []byte, subject digest.Digest) error {
	var p struct {
		Critical struct {
			Image struct {
				Digest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return fmt.Errorf("unreadable simple-signing payload: %w", err)
	}
	if p.Critical.Type != "cosign container image signature" {
		return fmt.Errorf("payload type %q is not a cosign container image signature", p.Critical.Type)
	}
	if p.Critical.Image.Digest != subject.String() {
		return fmt.Errorf("the signed payload is for digest %s, not this image's %s", p.Critical.Image.Digest, subject)
	}
	return nil
}

// builderID is a SLSA provenance predicate's builder id (v0.2 or v1).
func builderID(pred map[string]any) string {
	get := func(m map[string]any, keys ...string) string {
		for i, k := range keys {
			v, ok := m[k]
			if !ok {
				return ""
			}
			if i == len(keys)-1 {
				s, _ := v.(string)
				return s
			}
			if m, ok = v.(map[string]any); !ok {
				return ""
			}
		}
		return ""
	}
	if id := get(pred, "builder", "id"); id != "" {
		return id
	}
	return get(pred, "runDetails", "builder", "id")
}
