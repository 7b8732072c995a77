//go:build unix

package imagebuild

import (
	"os"
	"path/filepath"
	"syscall"
)

// buildLock serializes go builds of goldproxy on this machine (test packages that build
// the image run in parallel): the first compiles, the next finds the build cache warm and
// only links, instead of two full compiles of Trivy competing for the same cores.
func buildLock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "goldproxy-image-build.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
