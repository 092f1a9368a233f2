package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Reloading follows nats-server's model: the new file is loaded and validated
// like at start-up, then compared with the running configuration key by key.
// A changed key that can take effect at run time is applied; a changed key
// that cannot (a listen address, the node name, the bus URLs…) is reported as
// needing a restart and the running value is kept.

// LiveKeys are the keys (or whole sections, or lists) a running node applies
// without a restart. Every other key needs one: among them the TLS
// certificates (cache.tls_*, edge.tls_*, bus.server.tls_*), read at start.
var LiveKeys = []string{
	"node.log_level",
	"origin.capacity",
	"origin.hls", // for streams claimed after the reload
	"origin.transcode.ladders",
	"cache.max_bytes",
	"auth.users", // auth.signing_key and auth.origin_secret need a restart
	"auth.http_address",
	"auth.http_timeout",
	"auth.http_cache_ttl",
	"auth.http_fallback",
	"hooks.url",
	"hooks.events",
	"hooks.timeout",
	"hooks.retries", // hooks.queue_size needs a restart
	"sources",
}

// Live reports whether key (a dotted path, as in error messages) applies at run time.
func Live(key string) bool {
	for _, k := range LiveKeys {
		if key == k || strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

// Changes is what Reconcile found between two configurations.
type Changes struct {
	// Applied are the changed keys that take effect at run time, sorted.
	Applied []string
	// Restart are the changed keys that need a restart, sorted; the new
	// configuration got their running values back.
	Restart []string
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Applied) == 0 && len(c.Restart) == 0 }

// Has reports whether an applied key is key or lies under it ("origin.hls"
// matches "origin.hls.variant").
func (c Changes) Has(key string) bool {
	for _, k := range c.Applied {
		if k == key || strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

// Reconcile compares the running configuration old with a newly loaded one,
// puts the running value back into next for every changed key that needs a
// restart, and says which keys changed. Lists are compared whole (a ladder,
// the sources, the bus URLs). next must have been validated; Reconcile
// validates it again after the keys it put back, since a mix of old and new
// values might not hold together.
func Reconcile(old, next *Config) (Changes, error) {
	var ch Changes
	reconcile(reflect.ValueOf(old).Elem(), reflect.ValueOf(next).Elem(), "", &ch)
	slices.Sort(ch.Applied)
	slices.Sort(ch.Restart)
	if err := next.Validate(); err != nil {
		return ch, fmt.Errorf("with the keys that need a restart kept at their running values: %w", err)
	}
	return ch, nil
}

func reconcile(old, next reflect.Value, prefix string, ch *Changes) {
	t := old.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if tag == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		o, n := old.Field(i), next.Field(i)
		if o.Kind() == reflect.Struct && !Live(key) {
			reconcile(o, n, key, ch)
			continue
		}
		if reflect.DeepEqual(o.Interface(), n.Interface()) {
			continue
		}
		if Live(key) {
			ch.Applied = append(ch.Applied, key)
			continue
		}
		ch.Restart = append(ch.Restart, key)
		n.Set(o)
	}
}

// SourceChanges is how the sources lists of two configurations differ, by name.
type SourceChanges struct {
	Added, Removed, Changed, Kept []string
}

// DiffSources compares two sources lists by name.
func DiffSources(old, next []Source) SourceChanges {
	var d SourceChanges
	was := map[string]Source{}
	for _, s := range old {
		was[s.Name] = s
	}
	for _, s := range next {
		o, ok := was[s.Name]
		switch {
		case !ok:
			d.Added = append(d.Added, s.Name)
		case o != s:
			d.Changed = append(d.Changed, s.Name)
		default:
			d.Kept = append(d.Kept, s.Name)
		}
		delete(was, s.Name)
	}
	for _, s := range old {
		if _, gone := was[s.Name]; gone {
			d.Removed = append(d.Removed, s.Name)
		}
	}
	return d
}
