package presence_test

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seed351623e9/presence"
)

func TestClassify(t *testing.T) {
	const max = time.Duration(math.MaxInt64)
	for _, tc := range []struct {
		age, ttl time.Duration
		want     presence.State
	}{
		{0, 0, presence.Active},
		{0, time.Second, presence.Active},
		{time.Second, time.Second, presence.Active},
		{time.Second + 1, time.Second, presence.Stale},
		{2 * time.Second, time.Second, presence.Stale},
		{2*time.Second + 1, time.Second, presence.Expired},
		{1, 0, presence.Expired},
		{-5, 0, presence.Active},           // negative age counts as 0
		{0, -time.Hour, presence.Active},   // negative ttl counts as 0
		{1, -time.Hour, presence.Expired},  // ... so any age > 0 is expired
		{max, max, presence.Active},        // no overflow at the top
		{max, max/2 + 1, presence.Stale},   // 2·ttl saturates instead of wrapping negative
		{max, max / 2, presence.Expired},   // 2·(max/2) = max-1 < max
		{max - 1, max / 2, presence.Stale}, // exactly 2·ttl
		{math.MinInt64, math.MinInt64, presence.Active},
	} {
		assert.Equal(t, tc.want, presence.Classify(tc.age, tc.ttl), "Classify(%d, %d)", tc.age, tc.ttl)
	}
}

func TestStateText(t *testing.T) {
	for s, name := range map[presence.State]string{
		presence.Active: "active", presence.Stale: "stale", presence.Expired: "expired",
	} {
		assert.Equal(t, name, s.String())
		b, err := s.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, name, string(b))
		var back presence.State
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, s, back)
	}

	assert.Equal(t, "State(7)", presence.State(7).String())
	_, err := presence.State(7).MarshalText()
	assert.ErrorIs(t, err, presence.ErrInvalidState)

	for _, bad := range []string{"", "Active", "ACTIVE", "activ", "active ", "dead", "\x00"} {
		s := presence.Stale
		assert.ErrorIs(t, s.UnmarshalText([]byte(bad)), presence.ErrInvalidState, "%q", bad)
		assert.Equal(t, presence.Stale, s, "a failed unmarshal leaves the state unchanged")
	}

	// States are JSON strings through TextMarshaler.
	b, err := json.Marshal([]presence.State{presence.Active, presence.Expired})
	require.NoError(t, err)
	assert.JSONEq(t, `["active","expired"]`, string(b))
}
