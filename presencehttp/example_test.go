package presencehttp_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/seed351623e9/presence"
	"github.com/seed351623e9/presence/presencehttp"
)

func Example() {
	reg := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	_ = reg.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: "w1"}, 1, now)

	mux := http.NewServeMux()
	mux.Handle("/presence/", http.StripPrefix("/presence", presencehttp.New(reg, presencehttp.Options{
		Now: func() time.Time { return now },
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, _ := http.Get(srv.URL + "/presence/groups")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))
	// Output:
	// [{"queue":"orders","group":"workers","active":1,"stale":0,"expired":0}
	// ]
}
