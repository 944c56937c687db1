package presencehttp_test

import (
	"testing"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
)

// FuzzCursor: any after parameter decodes to a position or fails; never a
// panic. A decoded position encodes to a cursor that decodes to the same
// position, and every key, whatever its bytes, survives the round trip.
func FuzzCursor(f *testing.F) {
	f.Add("", "", "", false)
	f.Add("orders", "workers", "w1", false)
	f.Add("q\x00", "\xff", "", true) // any bytes, an empty consumer
	f.Add("", "", "c/+=?&", false)   // URL and base64 specials
	f.Fuzz(func(t *testing.T, q, g, c string, groupEnd bool) {
		if groupEnd {
			c = ""
		}
		k := presence.Key{Queue: q, Group: g, Consumer: c}
		s := presencehttp.EncodeCursor(k, groupEnd)
		k2, end2, err := presencehttp.DecodeCursor(s)
		if err != nil || k2 != k || end2 != groupEnd {
			t.Fatalf("%+v %v -> %q -> %+v %v %v", k, groupEnd, s, k2, end2, err)
		}
		// The strings as a raw cursor: decoded or refused, and if decoded,
		// stable through another round.
		for _, raw := range []string{q, g, c, q + g + c} {
			k3, end3, err := presencehttp.DecodeCursor(raw)
			if err != nil {
				continue
			}
			k4, end4, err := presencehttp.DecodeCursor(presencehttp.EncodeCursor(k3, end3))
			if err != nil || k4 != k3 || end4 != end3 {
				t.Fatalf("%q decoded to %+v %v, which does not round-trip", raw, k3, end3)
			}
		}
	})
}
