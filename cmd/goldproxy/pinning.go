package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/gate"
)

// pinCheck says when a base image must be pinned by digest and how to find the digest
// to suggest. The zero value warns about every unpinned base and suggests no digest.
type pinCheck struct {
	require func(repo string) bool                   // pinning is an error for repo
	digest  func(ref name.Reference) (string, error) // the digest ref points at now
}

func (p pinCheck) required(repo string) bool { return p.require != nil && p.require(repo) }

// check says why image (parsed as ref) is not pinned and what to write instead, or ""
// when it is pinned by digest.
func (p pinCheck) check(image string, ref name.Reference) string {
	tag, ok := ref.(name.Tag)
	if !ok {
		return "" // name.Digest: pinned, with or without a tag before "@"
	}
	written := image
	var why string
	switch {
	case !hasTag(image):
		why = "no tag means :latest, which moves (DL3007: Using latest is prone to errors); pin the base by digest"
		image += ":latest"
	case tag.TagStr() == "latest":
		why = "the latest tag moves (DL3007: Using latest is prone to errors); pin a version by digest"
	default:
		why = fmt.Sprintf("tag %q is not pinned by digest, so the image behind it can change", tag.TagStr())
	}
	if p.digest == nil {
		return fmt.Sprintf("FROM %s: %s: write FROM %s@sha256:<digest> (the digest: goldproxy check-dockerfile --proxy URL, or crane digest %s)", written, why, image, image)
	}
	d, err := p.digest(ref)
	if err != nil {
		return fmt.Sprintf("FROM %s: %s; its digest could not be resolved through the proxy: %v", written, why, err)
	}
	return fmt.Sprintf("FROM %s: %s: use FROM %s@%s", written, why, image, d)
}

// hasTag reports whether an image reference names a tag: a ":" in its last path
// component (a registry's port is in the first).
func hasTag(image string) bool {
	image, _, _ = strings.Cut(image, "@")
	return strings.Contains(image[strings.LastIndex(image, "/")+1:], ":")
}

// pinnedByPolicy reports whether the policy for repo enforces the pinned rule.
func pinnedByPolicy(pol *policy.Set, repo string) bool {
	p, _ := pol.Choose(repo)
	return p.Pinned && p.Mode != "audit"
}

// digestViaProxy resolves a tag to its manifest (or index) digest with one manifest GET
// through a running goldproxy, naming the upstream by host in the path as clients do.
func digestViaProxy(ctx context.Context, proxyURL string, ref name.Reference) (string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	u, err := url.Parse(proxyURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--proxy %q is not a URL like http://localhost:5000", proxyURL)
	}
	var opts []name.Option
	if u.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	via, err := name.ParseReference(u.Host+"/"+gate.RepositoryOf(ref)+":"+ref.Identifier(), opts...)
	if err != nil {
		return "", err
	}
	// GET, not HEAD: when the proxy denies the base, its body says why.
	desc, err := remote.Get(via, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}
