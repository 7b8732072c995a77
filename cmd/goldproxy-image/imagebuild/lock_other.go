//go:build !unix

package imagebuild

// buildLock is a no-op where flock is not available.
func buildLock() (func(), error) { return func() {}, nil }
