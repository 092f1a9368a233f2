package hlscache

import "sync"

// handlerGate counts the viewer requests being served and the goroutines
// they start (demand signals), so that Close can wait for all of them.
//
// Invariants: once close has begun, enter and spawn refuse (false), so no
// count is added after close starts waiting (a WaitGroup must not grow
// while it is waited on); every enter that returned true is matched by one
// leave.
type handlerGate struct {
	mu     sync.RWMutex // guards closed against wg.Add; shared by the requests
	closed bool
	wg     sync.WaitGroup
}

// enter counts a request in; false once the gate is closing.
func (g *handlerGate) enter() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// leave counts a request out.
func (g *handlerGate) leave() { g.wg.Done() }

// spawn runs f on a goroutine that close waits for; false, with f not run,
// once the gate is closing.
func (g *handlerGate) spawn(f func()) bool {
	if !g.enter() {
		return false
	}
	go func() {
		defer g.leave()
		f()
	}()
	return true
}

// close refuses new requests and tasks and waits for those counted in.
func (g *handlerGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
