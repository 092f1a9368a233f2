package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxDecisions bounds the authorizer's decision cache; when it is full the
// expired entries go, and if that is not enough, all of them.
const maxDecisions = 10000

// authorizer asks an external HTTP service (auth.http_address) and caches
// its answers, allow and deny alike, for auth.http_cache_ttl.
type authorizer struct {
	url      string
	timeout  time.Duration
	ttl      time.Duration
	fallback bool // allow when the authorizer is down
	client   *http.Client
	log      *slog.Logger
	now      func() time.Time

	mu        sync.Mutex
	decisions map[[sha256.Size]byte]decision
	down      atomic.Bool // logged once per outage
}

type decision struct {
	status  int // the authorizer's HTTP status
	expires time.Time
}

// authorizerBody is what the authorizer receives.
type authorizerBody struct {
	User     string `json:"user"`
	Pass     string `json:"pass"`
	IP       string `json:"ip"`
	Action   string `json:"action"`
	Path     string `json:"path"`
	Protocol string `json:"protocol"`
	Query    string `json:"query"`
}

// errDown wraps why the authorizer could not answer.
var errDown = errors.New("authorizer unreachable")

// ask returns the authorizer's HTTP status for b, from the cache when a
// fresh decision is there; an error (wrapping errDown) when it is down.
func (a *authorizer) ask(ctx context.Context, b authorizerBody) (int, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return 0, err
	}
	key := sha256.Sum256(body) // the password is not kept in the clear
	now := a.now()
	a.mu.Lock()
	d, ok := a.decisions[key]
	a.mu.Unlock()
	if ok && now.Before(d.expires) {
		return d.status, nil
	}

	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errDown, err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := a.client.Do(req)
	if err != nil {
		a.markDown(err)
		return 0, fmt.Errorf("%w: %v", errDown, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
	if res.StatusCode >= 500 {
		err := fmt.Errorf("status %d", res.StatusCode)
		a.markDown(err)
		return 0, fmt.Errorf("%w: %v", errDown, err)
	}
	if a.down.CompareAndSwap(true, false) {
		a.log.Info("external authorizer answers again", "url", a.url)
	}
	if a.ttl > 0 {
		a.mu.Lock()
		if len(a.decisions) >= maxDecisions {
			for k, d := range a.decisions {
				if !now.Before(d.expires) {
					delete(a.decisions, k)
				}
			}
			if len(a.decisions) >= maxDecisions {
				clear(a.decisions)
			}
		}
		a.decisions[key] = decision{status: res.StatusCode, expires: now.Add(a.ttl)}
		a.mu.Unlock()
	}
	return res.StatusCode, nil
}

// markDown logs the start of an outage, once.
func (a *authorizer) markDown(err error) {
	if a.down.CompareAndSwap(false, true) {
		policy := "deny"
		if a.fallback {
			policy = "allow"
		}
		a.log.Warn("external authorizer unreachable; applying auth.http_fallback until it answers",
			"url", a.url, "fallback", policy, "err", err)
	}
}
