package presencehttp

import "github.com/seed351623e9/presence"

// Cursor codec for the tests.
func EncodeCursor(k presence.Key, groupEnd bool) string {
	return position{key: k, groupEnd: groupEnd}.encode()
}

func DecodeCursor(s string) (presence.Key, bool, error) {
	p, err := decodePosition(s)
	return p.key, p.groupEnd, err
}
