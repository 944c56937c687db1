package entry

import (
	"strings"
	"testing"
)

// KeyIs agrees with Key for short and long names, equal and not, including
// names that differ only in their last byte or only in how their bytes are
// split between the three strings.
func TestKeyIs(t *testing.T) {
	long := strings.Repeat("x", 200)
	names := []string{"", "a", "ab", "ba", "\x80", long, long[:127], long[:128], long + "y", long + "z"}
	for _, q := range names {
		for _, g := range names {
			for _, c := range names {
				e := New(q, g, c, 1, 0)
				for _, q2 := range names {
					for _, g2 := range names {
						for _, c2 := range names {
							want := q == q2 && g == g2 && c == c2
							if got := e.KeyIs(q2, g2, c2); got != want {
								t.Fatalf("New(%.5q…, %.5q…, %.5q…).KeyIs(%.5q…, %.5q…, %.5q…) = %v", q, g, c, q2, g2, c2, got)
							}
						}
					}
				}
			}
		}
	}
	// The same bytes split differently are other keys.
	if New("ab", "", "c", 1, 0).KeyIs("a", "b", "c") {
		t.Fatal("ab|''|c is a|b|c")
	}
}
