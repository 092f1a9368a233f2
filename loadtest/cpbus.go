package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/streamgrid/streamgrid/bus"
)

// busNodes is how many bus nodes the control-plane simulation starts.
const busNodes = 3

// busCluster is a three-node bus run as child processes (`streamgrid bus`),
// so that their CPU time is theirs alone and can be read from /proc.
type busCluster struct {
	// command starts one bus node; it is configured through SG_ variables.
	command []string
	dir     string

	procs []*exec.Cmd
	urls  []string
}

// start picks the ports, starts the nodes together (a JetStream cluster
// needs its routes up front) and waits until each takes connections.
func (b *busCluster) start(ctx context.Context) error {
	if len(b.command) == 0 {
		return errors.New("no command to start a bus node")
	}
	cfgPath := filepath.Join(b.dir, "bus.yml")
	// An explicit, nearly empty configuration: a streamgrid.yml in the
	// working directory must not configure the simulated bus.
	if err := os.WriteFile(cfgPath, []byte("node:\n  log_level: warn\n"), 0o600); err != nil {
		return err
	}
	client, err := freePorts(busNodes)
	if err != nil {
		return err
	}
	cluster, err := freePorts(busNodes)
	if err != nil {
		return err
	}
	routes := make([]string, busNodes)
	for i, a := range cluster {
		routes[i] = "nats://" + a
	}
	for i := range busNodes {
		name := fmt.Sprintf("sim-bus%d", i+1)
		store := filepath.Join(b.dir, name)
		cmd := exec.Command(b.command[0], append(b.command[1:], "--config", cfgPath)...)
		cmd.Env = append(withoutSGEnv(os.Environ()),
			"SG_NODE_NAME="+name,
			"SG_API_ADDRESS=127.0.0.1:0",
			"SG_BUS_SERVER_NAME="+name,
			"SG_BUS_SERVER_LISTEN="+client[i],
			"SG_BUS_SERVER_CLUSTER_NAME=streamgrid-sim",
			"SG_BUS_SERVER_CLUSTER_LISTEN="+cluster[i],
			"SG_BUS_SERVER_ROUTES="+strings.Join(routes, ","),
			"SG_BUS_SERVER_STORE_DIR="+store,
		)
		cmd.Stderr = &tailBuffer{max: 4096}
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			b.close()
			return fmt.Errorf("start bus node %s: %w", name, err)
		}
		b.procs = append(b.procs, cmd)
		b.urls = append(b.urls, "nats://"+client[i])
	}
	for i, u := range b.urls {
		if err := ctx.Err(); err != nil {
			b.close()
			return err
		}
		nc, err := bus.Connect(bus.ConnOptions{URLs: []string{u}, Name: "sim-probe", ConnectTimeout: 30 * time.Second, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			err = fmt.Errorf("bus node %d did not come up: %w (its log: %s)", i+1, err, b.procs[i].Stderr)
			b.close()
			return err
		}
		nc.Close()
	}
	return nil
}

// pids returns the nodes' process ids.
func (b *busCluster) pids() []int {
	out := make([]int, len(b.procs))
	for i, p := range b.procs {
		out[i] = p.Process.Pid
	}
	return out
}

// close stops the nodes (SIGTERM, then SIGKILL) and waits for them.
func (b *busCluster) close() {
	for _, p := range b.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range b.procs {
		done := make(chan struct{})
		go func() {
			_ = p.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	b.procs = nil
}

// freePorts returns n loopback addresses whose ports were free a moment
// ago: the nodes must know each other's before they start (the same small
// race the cluster tests accept).
func freePorts(n int) ([]string, error) {
	out := make([]string, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// withoutSGEnv drops the caller's SG_ variables: the bus nodes are
// configured by the simulation alone.
func withoutSGEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SG_") {
			out = append(out, kv)
		}
	}
	return out
}

// tailBuffer keeps the last max bytes written to it (a child's log, for errors).
type tailBuffer struct {
	max int
	mu  sync.Mutex
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
