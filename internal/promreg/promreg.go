// Package promreg registers a component's Prometheus collectors as a set:
// all of them or, on failure, none.
package promreg

import "github.com/prometheus/client_golang/prometheus"

// Register adds every collector in cs to reg, in order. When one fails it
// removes those it had added and returns that collector's error unwrapped
// (so errors.As finds a prometheus.AlreadyRegisteredError).
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			Unregister(reg, cs[:i]...)
			return err
		}
	}
	return nil
}

// Unregister removes every collector in cs from reg; one that is not
// registered there is passed over.
func Unregister(reg prometheus.Registerer, cs ...prometheus.Collector) {
	for _, c := range cs {
		reg.Unregister(c)
	}
}
