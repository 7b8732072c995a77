// Package proxy is goldproxy's HTTP front: the only package that speaks the OCI
// distribution protocol. It routes a client's request to an upstream registry and
// repository, resolves tags, ingests content from the upstream into the store on a miss
// (verifying every digest before anything is committed or served), and asks a Gate
// whether a manifest may be served.
//
// It must never serve a manifest the Gate has not allowed, never serve bytes that did not
// match their digest, and never write to an upstream: push, delete and uploads are
// refused with UNSUPPORTED.
package proxy
