package presence

import (
	"time"

	"github.com/seed351623e9/presence/internal/entry"
)

// Option configures a Registry in New.
type Option func(*config)

type config struct {
	maxStep     time.Duration
	shards      int
	max         int
	maxPerGroup int
	presize     int
	counters    bool
	ttlMin      time.Duration
	ttlMax      time.Duration
	hashClear   uint64 // hash bits cleared, so that tests make keys collide
}

// WithShards sets the number of shards. n is rounded up to a power of two,
// at most 65536; n <= 0 keeps the default, four shards per GOMAXPROCS.
func WithShards(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.shards = roundShards(n)
		}
	}
}

// WithMaxConsumers limits the registry to n consumers: a heartbeat that would
// register one more returns ErrTooManyConsumers and changes nothing, while
// heartbeats of registered consumers always succeed. n <= 0 means no limit,
// the default.
func WithMaxConsumers(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.max = n
		} else {
			c.max = 0
		}
	}
}

// WithMaxConsumersPerGroup limits every (queue, group) to n consumers, as
// Kafka's group.max.size does: a heartbeat that would register one more in a
// full group returns ErrGroupFull and changes nothing. Refreshes always
// succeed. n <= 0 means no limit, the default. The registry-wide limit of
// WithMaxConsumers applies as well.
func WithMaxConsumersPerGroup(n int) Option {
	return func(c *config) { c.maxPerGroup = max(n, 0) }
}

// maxPresize caps WithPresize, so that a wild hint cannot allocate gigabytes
// up front; the maps still grow past it on demand.
const maxPresize = 1 << 24

// WithPresize sizes the shards for about n consumers up front, so that a
// broker that knows its fleet pays no shard growth while it registers. The
// group index is not presized: how many queues and groups n consumers make
// is unknown, and its maps grow with them. n is capped at 16,777,216;
// n <= 0 keeps the default, small maps that grow.
func WithPresize(n int) Option {
	return func(c *config) { c.presize = min(n, maxPresize) }
}

// DefaultMaxClockStep is the clock step of a registry made without
// WithMaxClockStep.
const DefaultMaxClockStep = 30 * time.Second

// WithMaxClockStep sets the largest step back of the clock that the registry
// takes for ordinary reordering, d <= 0 keeping the default,
// DefaultMaxClockStep. A heartbeat older than the consumer's stored one by
// at most d is stale news and is ignored, as beats that raced are; one
// older by more than d corrects a clock error: the stored heartbeat came
// from a clock that was ahead, so the older beat replaces it (see
// Counters.ClockSteps). Likewise a stored heartbeat more than d ahead of the
// now of PruneExpired, or a restored one ahead of the now of ReadFromAt or
// MergeAt, is impossible by that clock. Pick d above the spread of the times
// that concurrent beats of one consumer carry, and below the TTL.
func WithMaxClockStep(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.maxStep = d
		}
	}
}

// WithTTLBounds bounds the heartbeat budgets that consumers declare
// (Registry.HeartbeatWithTTL, Handle.HeartbeatWithTTL), as a Kafka broker
// bounds session.timeout.ms with group.min.session.timeout.ms and
// group.max.session.timeout.ms. A declaration below lo is raised to lo and
// one above hi lowered to hi; lo <= 0 means no lower bound and hi <= 0 no
// upper bound (the default: none), and hi below lo is taken as lo.
//
// The registry clamps rather than refuses: a heartbeat is a sign of life
// and is always recorded, and the clamped budget is the one the consumer is
// judged by and reported with (Consumer.TTL). Restored and merged rows are
// clamped alike. The bounds do not apply to the TTL a read passes for the
// consumers that declare none.
func WithTTLBounds(lo, hi time.Duration) Option {
	return func(c *config) {
		c.ttlMin, c.ttlMax = max(lo, 0), max(hi, 0)
		if c.ttlMax > 0 && c.ttlMax < c.ttlMin {
			c.ttlMax = c.ttlMin
		}
	}
}

// MaxDeclaredTTL is the largest TTL a consumer can declare: a registry keeps
// a declared TTL in whole milliseconds, rounded up, in 4 bytes of the
// consumer's entry, so a longer one is taken as MaxDeclaredTTL (about
// 49.7 days) and a shorter one as a whole number of milliseconds (1 ns is
// 1 ms). Consumer.TTL reports the TTL as kept.
const MaxDeclaredTTL = entry.MaxTTL
