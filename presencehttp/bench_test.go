package presencehttp_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
)

// BenchmarkList serves one page of each list over 100,000 consumers (100
// queues × 10 groups × 100), next to impl=snapshot: the copy and sort of
// the whole registry that an unpaged /consumers made before encoding.
func BenchmarkList(b *testing.B) {
	r := presence.New()
	for q := range 100 {
		for g := range 10 {
			for c := range 100 {
				k := presence.Key{Queue: fmt.Sprintf("q%03d", q), Group: fmt.Sprintf("g%02d", g), Consumer: fmt.Sprintf("c%03d", c)}
				if err := r.Heartbeat(k, 0, t0); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	h := presencehttp.New(r, presencehttp.Options{Now: func() time.Time { return t0 }})
	b.Run("impl=snapshot/consumers=100000", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = r.Snapshot(t0, presence.DefaultTTL)
		}
	})
	for _, q := range []string{
		"consumers?limit=100",
		"consumers?limit=1000",
		"consumers?search=c042&limit=100",
		"consumers?queue=q050&limit=100",
		"consumers?queue=q050&group=g05&limit=100",
		"groups?limit=100",
		"groups?queue=q050",
		"stats",
	} {
		b.Run("impl=page/consumers=100000/get="+q, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/"+q, nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
	}
}
