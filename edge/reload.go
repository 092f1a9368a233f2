package edge

import (
	"errors"
	"slices"
)

// SetSources replaces the cameras this edge may pull while it runs (a
// configuration reload). A source whose settings are unchanged keeps its
// puller, its lease and its connection: its stream goes on untouched. A
// removed source stops (its lease is released, so no other edge takes it
// over unless it lists it too); a changed one restarts with its new settings;
// an added one starts. Invalid sources are refused as a whole, before
// anything changes.
func (e *Edge) SetSources(sources []Source) error {
	if !e.started {
		return errors.New("edge: not started")
	}
	next, err := e.buildPullers(sources)
	if err != nil {
		return err
	}
	e.mu.Lock()
	closing := e.closing
	e.mu.Unlock()
	if closing {
		return errors.New("edge: closing")
	}

	e.pmu.Lock()
	running := map[string]*puller{}
	for _, p := range e.pullers {
		running[p.src.Name] = p
	}
	var stop, start []*puller
	for i, p := range next {
		if old := running[p.src.Name]; old != nil && old.src == p.src {
			next[i] = old
			delete(running, p.src.Name)
			continue
		}
		start = append(start, p)
	}
	for _, p := range e.pullers {
		if running[p.src.Name] == p {
			stop = append(stop, p)
		}
	}
	// Stop first, so that a changed source's old puller has released the
	// lease and the camera's path before its successor starts.
	for _, p := range stop {
		p.close()
		p.log.Info("camera source removed or changed by a reload")
	}
	started := next[:0:0]
	for _, p := range next {
		if !slices.Contains(start, p) {
			started = append(started, p)
			continue
		}
		if err := p.start(); err != nil {
			e.log.Error("camera source not started", "source", p.src.Name, "err", err)
			continue
		}
		p.log.Info("camera source added by a reload", "on_demand", p.src.OnDemand)
		started = append(started, p)
	}
	e.pullers = started
	e.pmu.Unlock()
	e.Sources = slices.Clone(sources)
	return nil
}
