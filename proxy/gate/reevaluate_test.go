package gate

import "testing"

func TestNewerDB(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"v2@2026-03-02T06:00:00Z", "v2@2026-03-01T06:00:00Z", true},
		{"v2@2026-03-01T06:00:00Z", "v2@2026-03-02T06:00:00Z", false},
		{"v2@2026-03-01T06:00:00Z", "v2@2026-03-01T06:00:00Z", false},
		{"v3@2026-01-01T00:00:00Z", "v2@2026-03-01T06:00:00Z", true},
		{"test", "v2@2026-03-01T06:00:00Z", false},
		{"v2@2026-03-02T06:00:00Z", "test", false},
		{"", "v2@2026-03-01T06:00:00Z", false},
		{"x2@2026-03-02T06:00:00Z", "v2@2026-03-01T06:00:00Z", false},
	} {
		if got := newerDB(c.a, c.b); got != c.want {
			t.Errorf("newerDB(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
