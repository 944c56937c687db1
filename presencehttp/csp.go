package presencehttp

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
)

// pageCSP returns the Content-Security-Policy of the page html: only its
// own inline <script> and <style>, allowed by their SHA-256 hashes, may run
// or apply; it may fetch from its own origin only; nothing may frame it.
// No 'unsafe-inline': the page sets no style attributes and no handlers in
// markup.
func pageCSP(html []byte) string {
	hash := func(open, close string) string {
		_, rest, ok := bytes.Cut(html, []byte(open))
		body, _, ok2 := bytes.Cut(rest, []byte(close))
		if !ok || !ok2 {
			return "'none'"
		}
		sum := sha256.Sum256(body)
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return "default-src 'none'; script-src " + hash("<script>", "</script>") +
		"; style-src " + hash("<style>", "</style>") +
		"; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}
