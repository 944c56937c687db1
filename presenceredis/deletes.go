package presenceredis

import "github.com/seed351623e9/presence"

// addDeletes queues the consumers deregistered since the last flush (see
// presence.Registry.CollectDeleted), all of them, before the changes, so
// that a consumer that left and came back is deleted before it is written.
func (f *flush) addDeletes() {
	var ks []presence.Key
	f.m.reg.CollectDeleted(func(k presence.Key) { ks = append(ks, k) })
	for _, k := range ks {
		c, field := f.callFor(k)
		if c == nil { // its master is away: keep it for later
			f.m.reg.MarkDeleted(k)
			continue
		}
		c.dels = append(c.dels, k)
		c.delf = append(c.delf, field)
		f.grew()
	}
}

// keepDeleted records again deletes that did not reach Redis, unless their
// consumers registered again meanwhile.
func (m *Mirror) keepDeleted(ks []presence.Key) {
	for _, k := range ks {
		m.reg.MarkDeleted(k)
	}
}
