//go:build !presencehooks

package entry

// afterTimeCAS runs in Entry.Refresh between moving the heartbeat time and
// writing the lease count. In normal builds it is an empty function that the
// compiler removes; the presencehooks build tag lets tests pause a beat there
// to force interleavings that are otherwise too rare to hit.
func afterTimeCAS() {}

// afterRetire runs after a successful retire CAS (RetireIf, Retire), before
// the remover gives back the entry's slots; presencehooks builds can pause
// it there.
func afterRetire() {}

// beforeRetire runs in Entry.Retire before the entry is retired; like
// afterTimeCAS it is empty unless the presencehooks tag is set.
func beforeRetire() {}
