package promreg

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total", Help: "b"})
	taken := prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "c"})
	if err := reg.Register(taken); err != nil {
		t.Fatal(err)
	}
	clash := prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "c"})

	err := Register(reg, a, b, clash)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("Register with a clash: err = %v, want an AlreadyRegisteredError", err)
	}
	// Neither a nor b stayed: both register again.
	if err := Register(reg, a, b); err != nil {
		t.Fatalf("a and b after the failed Register: %v", err)
	}
	Unregister(reg, a, b)
	if err := Register(reg, a, b); err != nil {
		t.Fatalf("a and b after Unregister: %v", err)
	}
}
