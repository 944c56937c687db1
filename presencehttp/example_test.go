package presencehttp_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
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

// Lists come in pages: the Link header names the next one, relative to the
// route, with an opaque cursor.
func Example_paging() {
	reg := presence.New()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, c := range []string{"w1", "w2", "w3"} {
		_ = reg.Heartbeat(presence.Key{Queue: "orders", Group: "workers", Consumer: c}, 0, now)
	}
	srv := httptest.NewServer(presencehttp.New(reg, presencehttp.Options{Now: func() time.Time { return now }}))
	defer srv.Close()

	next := srv.URL + "/consumers?limit=2"
	for next != "" {
		resp, _ := http.Get(next)
		var rows []presencehttp.Row
		_ = json.NewDecoder(resp.Body).Decode(&rows)
		resp.Body.Close()
		for _, r := range rows {
			fmt.Print(r.Consumer, " ")
		}
		fmt.Println("| Link:", resp.Header.Get("Link") != "")
		next = ""
		if m := regexp.MustCompile(`^<([^>]*)>; rel="next"$`).FindStringSubmatch(resp.Header.Get("Link")); m != nil {
			ref, _ := url.Parse(m[1])
			next = resp.Request.URL.ResolveReference(ref).String()
		}
	}
	// Output:
	// w1 w2 | Link: true
	// w3 | Link: false
}
