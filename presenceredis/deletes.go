package presenceredis

import (
	"time"

	"github.com/seed351623e9/presence"
)

// drainEvents notes deregistrations, to delete them in Redis.
func (m *Mirror) drainEvents() {
	m.leftMu.Lock()
	defer m.leftMu.Unlock()
	for {
		select {
		case e, ok := <-m.sub.C:
			if !ok {
				return
			}
			if e.Kind == presence.EventLeft {
				m.left[e.Key] = struct{}{}
			}
		default:
			return
		}
	}
}

// addDeletes queues the consumers deregistered since the last flush and
// not registered again.
func (f *flush) addDeletes() {
	m := f.m
	m.drainEvents()
	m.leftMu.Lock()
	left := m.left
	m.left = map[presence.Key]struct{}{}
	m.leftMu.Unlock()
	for k := range left {
		if _, back := m.reg.Lookup(k, time.Time{}, 0); back {
			continue
		}
		c := f.callFor(k)
		if c == nil {
			m.keepDeleted([]presence.Key{k})
			continue
		}
		c.dels = append(c.dels, k)
		if f.count++; f.count >= m.opt.BatchConsumers {
			f.send()
		}
	}
}

// keepDeleted records again deletes that did not reach Redis.
func (m *Mirror) keepDeleted(ks []presence.Key) {
	m.leftMu.Lock()
	defer m.leftMu.Unlock()
	for _, k := range ks {
		m.left[k] = struct{}{}
	}
}
