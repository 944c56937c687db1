package presence

// Subscribers returns the number of subscriptions r delivers to, so that
// tests can check that Close unsubscribes.
func (r *Registry) Subscribers() int {
	if s := r.events.subs.Load(); s != nil {
		return len(*s)
	}
	return 0
}
