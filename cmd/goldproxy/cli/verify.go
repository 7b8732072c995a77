package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/trust"
)

// VerifySignatures finds in the image's registry what is attached to its manifest d
// (referrers, cosign's sha256-<hex>.sig/.att tags), the way the proxy does when it
// mirrors, and verifies it offline with the key files keys and the config's trusted
// root: the facts `scan --verify` judges with the same policy rules as the proxy.
func VerifySignatures(ctx context.Context, cfg *config.Config, image string, insecure bool, d digest.Digest, keys []string) *policy.Trust {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(image, opts...)
	if err != nil {
		return &policy.Trust{Error: err.Error()}
	}
	repo := ref.Context()
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	found := map[digest.Digest]string{}
	var errs []string
	if idx, err := remote.Referrers(repo.Digest(d.String()), ropts...); err != nil {
		errs = append(errs, "referrers: "+err.Error())
	} else if im, err := idx.IndexManifest(); err == nil {
		for _, m := range im.Manifests {
			found[digest.Digest(m.Digest.String())] = "referrer " + m.Digest.String()
		}
	}
	for _, suffix := range []string{"sig", "att"} {
		tag := "sha256-" + d.Encoded() + "." + suffix
		desc, err := remote.Head(repo.Tag(tag), ropts...)
		var te *transport.Error
		switch {
		case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
			continue
		case err != nil:
			errs = append(errs, "tag "+tag+": "+err.Error())
			continue
		}
		found[digest.Digest(desc.Digest.String())] = "tag " + tag
	}
	var mats []trust.Material
	for ad, via := range found {
		desc, err := remote.Get(repo.Digest(ad.String()), ropts...)
		if err != nil {
			errs = append(errs, via+": "+err.Error())
			continue
		}
		if digest.FromBytes(desc.Manifest) != ad {
			errs = append(errs, via+": the registry sent a manifest that does not match its digest")
			continue
		}
		m, err := trust.Extract(ad, desc.Manifest, via, func(b digest.Digest, _ int64) ([]byte, error) {
			l, err := remote.Layer(repo.Digest(b.String()), ropts...)
			if err != nil {
				return nil, err
			}
			rc, err := l.Compressed()
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			return io.ReadAll(io.LimitReader(rc, trust.MaxBlob+1))
		})
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		mats = append(mats, m...)
	}
	root := ""
	if cfg.Trust.TrustedRoot != "" {
		root = cfg.Resolve(cfg.Trust.TrustedRoot)
	}
	v, err := trust.New(trust.Options{TrustedRoot: root, RequireSCT: cfg.Trust.SCTRequired(), RequireTlog: cfg.Trust.TlogRequired()})
	if err != nil {
		return &policy.Trust{Error: fmt.Sprintf("trust.trusted_root: %v", err)}
	}
	t := v.Verify(d, mats, keys)
	t.Error = strings.Join(errs, "; ")
	return t
}
