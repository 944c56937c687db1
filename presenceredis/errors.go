package presenceredis

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ErrPartial is wrapped by the error of a flush or a read that reached some
// buckets and not others, typically while a master is down or failing over:
// a read's rows are those of the buckets it reached, a flush wrote those
// buckets and keeps the rest marked. The error names the missing buckets,
// their slots and the first errors. Match it with errors.Is.
var ErrPartial = errors.New("presence: redis: some buckets unavailable")

var errBadReply = errors.New("presence: redis: unexpected script reply")

// unavailable returns nil if failed is empty, else an error for op naming
// the failed buckets, their slots and up to three distinct causes. It wraps
// ErrPartial if reached, and the first cause.
func unavailable(op string, failed map[int]error, reached bool) error {
	if len(failed) == 0 {
		return nil
	}
	bs := make([]int, 0, len(failed))
	for b := range failed {
		bs = append(bs, b)
	}
	slices.Sort(bs)
	var ranges, causes []string
	for i := 0; i < len(bs); {
		j := i
		for j+1 < len(bs) && bs[j+1] == bs[j]+1 {
			j++
		}
		r := strconv.Itoa(bucketSlot(bs[i]))
		if j > i {
			r += "-" + strconv.Itoa(bucketSlot(bs[j]))
		}
		ranges = append(ranges, r)
		i = j + 1
	}
	for _, b := range bs {
		if msg := failed[b].Error(); !slices.Contains(causes, msg) && len(causes) < 3 {
			causes = append(causes, msg)
		}
	}
	what := fmt.Sprintf("%s: %d of %d buckets unavailable (slots %s): %s", op, len(bs), Buckets,
		strings.Join(ranges, ", "), strings.Join(causes, "; "))
	if reached {
		return fmt.Errorf("%w: %s: %w", ErrPartial, what, failed[bs[0]])
	}
	return fmt.Errorf("presence: redis: %s: %w", what, failed[bs[0]])
}
