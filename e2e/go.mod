module github.com/seed351623e9/presence/e2e

go 1.24

require (
	github.com/chromedp/chromedp v0.13.6
	github.com/seed351623e9/presence v0.1.0
)

require (
	github.com/chromedp/cdproto v0.0.0-20250403032234-65de8f5d025b // indirect
	github.com/chromedp/sysutil v1.1.0 // indirect
	github.com/go-json-experiment/json v0.0.0-20250211171154-1ae217ad3535 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/pool v0.2.1 // indirect
	github.com/gobwas/ws v1.4.0 // indirect
	github.com/puzpuzpuz/xsync/v3 v3.5.1 // indirect
	golang.org/x/sys v0.29.0 // indirect
)

// Local development: build against this checkout. Go ignores a replace
// outside the main module, so users get the required version; see the
// README's Release section for why go.work alone is not enough.
replace github.com/seed351623e9/presence => ../
