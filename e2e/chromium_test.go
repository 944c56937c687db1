package e2e

import (
	"testing"

	"github.com/seed351623e9/presence/internal/integration"
)

// Without Chromium the page test cannot run; this test makes that a failure
// naming the Debian package, or, with PRESENCE_SKIP_INTEGRATION=1, a loud
// skip, so that a machine without a browser never reports e2e as passing.
func TestChromiumInstalled(t *testing.T) {
	integration.Need(t, "chromium", "chromium", "chromium-browser", "google-chrome")
}
