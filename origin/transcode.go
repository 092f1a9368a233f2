package origin

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/transcode"
)

// TranscodeConfig configures ABR-ladder transcoding. Without ladders every
// stream is packaged as it comes.
type TranscodeConfig struct {
	// FFmpeg is the ffmpeg binary; default "ffmpeg".
	FFmpeg string
	// Encoder is auto (default), nvenc or x264.
	Encoder transcode.Encoder
	// Fallback says what happens without a usable GPU encoder: cpu (default)
	// or refuse.
	Fallback transcode.Policy
	// GPUSessions is the most streams transcoded on the GPU at once; 0 means
	// DefaultGPUSessions when NVENC is usable, none otherwise.
	GPUSessions int
	// CPUSlots is the most streams transcoded on the CPU at once.
	CPUSlots int
	// Ladders, first match wins.
	Ladders []LadderRule
	// DetectTimeout bounds the encoder probe at Start; default 20 s.
	DetectTimeout time.Duration
	// Capabilities, when set, is used instead of probing ffmpeg at Start
	// (transcode.Detect): tests give origins a "GPU" this way, and an
	// operator can pin what a node offers. Everything downstream (plans,
	// slots, gossip, placement) is the same as with detected capabilities.
	Capabilities *transcode.Capabilities
}

// LadderRule applies Ladder to the streams whose path matches Match, a
// path.Match pattern ('*' stays within one path element; there is no "**").
type LadderRule struct {
	Match string
	// Fallback, when set, replaces TranscodeConfig.Fallback for this
	// ladder: cpu lets an origin without a usable GPU encoder transcode it
	// on the CPU, refuse keeps it on origins with a GPU.
	Fallback transcode.Policy
	Ladder   transcode.Ladder
}

// fallback is the rule's effective policy: its own, else the origin's.
func (r LadderRule) fallback(def transcode.Policy) transcode.Policy {
	if r.Fallback != "" {
		return r.Fallback
	}
	return def
}

// DefaultGPUSessions is the GPU session count when GPUSessions is 0 and
// NVENC is usable.
const DefaultGPUSessions = 8

// Refusal reasons (label "reason" of streamgrid_origin_transcode_refused_total).
const (
	refuseNoGPU     = "no_gpu"
	refuseNoEncoder = "no_encoder"
	refuseNoSlot    = "no_slot"
)

// TranscodeStatus is what the origin found out about its encoders and how
// its transcode slots are used.
type TranscodeStatus struct {
	// Enabled: at least one ladder is configured (Detect ran).
	Enabled      bool                   `json:"enabled"`
	Capabilities transcode.Capabilities `json:"capabilities"`
	// GPUSessions and CPUSlots are the effective slot counts; GPUInUse and
	// CPUInUse the slots taken.
	GPUSessions int            `json:"gpu_sessions"`
	CPUSlots    int            `json:"cpu_slots"`
	GPUInUse    int            `json:"gpu_in_use"`
	CPUInUse    int            `json:"cpu_in_use"`
	Ladders     []LadderStatus `json:"ladders,omitempty"`
}

// LadderStatus is the encoder chosen for one ladder rule, or why none is.
type LadderStatus struct {
	Match   string `json:"match"`
	Encoder string `json:"encoder,omitempty"`
	Refused string `json:"refused,omitempty"`
}

// ladderPlan is how the streams of one ladder rule are handled.
type ladderPlan struct {
	rule    LadderRule
	encoder transcode.Encoder // resolved: nvenc or x264; "" when refused
	reason  string            // refusal label when refused
	refuse  string            // refusal message when refused
}

// transcoding is the origin's transcode state; fixed after Start except for
// what o.mu guards.
type transcoding struct {
	enabled  bool
	caps     transcode.Capabilities
	plans    atomic.Pointer[[]*ladderPlan] // replaced by SetLadders
	gpuSlots int
	cpuSlots int
	metrics  *transcode.Metrics
	refused  *prometheus.CounterVec
	capGauge *prometheus.GaugeVec
	slots    *prometheus.GaugeVec
	inUse    *prometheus.GaugeVec
}

// setupTranscode validates the ladders, probes ffmpeg when any is configured
// and registers the transcode metrics.
func (o *Origin) setupTranscode() error {
	t := &o.Transcode
	if err := t.applyDefaults(); err != nil {
		return err
	}
	tr := &o.tr
	labels := prometheus.Labels{"node": o.Node, "role": "origin"}
	tr.newCollectors(labels)
	o.m.collectors = append(o.m.collectors, tr.refused, tr.capGauge, tr.slots, tr.inUse, o.unclaimedGauge(), o.windowGauge())
	if len(t.Ladders) == 0 {
		return nil
	}
	tr.enabled = true

	if t.Capabilities != nil {
		tr.caps = *t.Capabilities
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), t.DetectTimeout)
		tr.caps = transcode.Detect(ctx, t.FFmpeg)
		cancel()
	}
	c := tr.caps
	nvenc := c.CUDA && c.ScaleCUDA && (c.NVENCH264 || c.NVENCHEVC)
	tr.gpuSlots = t.GPUSessions
	if tr.gpuSlots == 0 && nvenc {
		tr.gpuSlots = DefaultGPUSessions
	}
	if !nvenc {
		tr.gpuSlots = 0
	}
	tr.cpuSlots = t.CPUSlots
	plans := o.buildPlans(t.Ladders)
	tr.plans.Store(&plans)
	o.Log.Info("transcode capabilities", "ffmpeg", c.FFmpeg, "x264", c.X264, "x265", c.X265,
		"nvenc_h264", c.NVENCH264, "nvenc_hevc", c.NVENCHEVC, "cuda", c.CUDA, "scale_cuda", c.ScaleCUDA,
		"gpus", c.GPUs, "gpu_sessions", tr.gpuSlots, "cpu_slots", tr.cpuSlots, "probe_errors", c.Err)
	tr.setGauges()
	m, err := transcode.NewMetrics(o.Metrics, labels)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	tr.metrics = m
	return nil
}

// applyDefaults fills in the defaults and validates the configuration.
func (t *TranscodeConfig) applyDefaults() error {
	if t.FFmpeg == "" {
		t.FFmpeg = DefaultFFmpeg
	}
	if t.Encoder == "" {
		t.Encoder = transcode.EncoderAuto
	}
	if t.Fallback == "" {
		t.Fallback = transcode.PolicyCPU
	}
	if t.DetectTimeout <= 0 {
		t.DetectTimeout = 20 * time.Second
	}
	if err := t.Encoder.Validate(); err != nil {
		return fmt.Errorf("origin: transcode: %w", err)
	}
	if err := t.Fallback.Validate(); err != nil {
		return fmt.Errorf("origin: transcode: %w", err)
	}
	if t.GPUSessions < 0 || t.CPUSlots < 0 {
		return errors.New("origin: transcode: slot counts must not be negative")
	}
	for k, r := range t.Ladders {
		if _, err := path.Match(r.Match, "x"); err != nil || r.Match == "" {
			return fmt.Errorf("origin: transcode: ladders[%d].match %q is not a valid pattern", k, r.Match)
		}
		if err := r.Fallback.Validate(); err != nil {
			return fmt.Errorf("origin: transcode: ladders[%d]: %w", k, err)
		}
		if err := r.Ladder.Validate(); err != nil {
			return fmt.Errorf("origin: transcode: ladders[%d]: %w", k, err)
		}
	}
	return nil
}

// newCollectors creates the transcode metrics the origin registers with its own.
func (tr *transcoding) newCollectors(labels prometheus.Labels) {
	tr.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "streamgrid", Subsystem: "origin", Name: "transcode_refused_total",
		Help:        "Streams a ladder matched that this origin left unclaimed (no_gpu, no_encoder, no_slot).",
		ConstLabels: labels,
	}, []string{"reason"})
	tr.capGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "streamgrid", Subsystem: "origin", Name: "transcode_capability",
		Help:        "1 when the encoder capability was detected usable (x264, x265, nvenc_h264, nvenc_hevc, cuda, scale_cuda).",
		ConstLabels: labels,
	}, []string{"capability"})
	tr.slots = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "streamgrid", Subsystem: "origin", Name: "transcode_slots",
		Help: "Streams this origin may transcode at once, by kind (gpu, cpu).", ConstLabels: labels,
	}, []string{"kind"})
	tr.inUse = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "streamgrid", Subsystem: "origin", Name: "transcode_slots_used",
		Help: "Transcode slots taken, by kind (gpu, cpu).", ConstLabels: labels,
	}, []string{"kind"})
}

// setGauges publishes the detected capabilities and the slot counts.
func (tr *transcoding) setGauges() {
	c := tr.caps
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for name, v := range map[string]bool{"x264": c.X264, "x265": c.X265, "nvenc_h264": c.NVENCH264,
		"nvenc_hevc": c.NVENCHEVC, "cuda": c.CUDA, "scale_cuda": c.ScaleCUDA} {
		tr.capGauge.WithLabelValues(name).Set(b(v))
	}
	tr.slots.WithLabelValues("gpu").Set(float64(tr.gpuSlots))
	tr.slots.WithLabelValues("cpu").Set(float64(tr.cpuSlots))
	tr.inUse.WithLabelValues("gpu").Set(0)
	tr.inUse.WithLabelValues("cpu").Set(0)
}

// buildPlans chooses the encoder of every ladder rule, from the detected capabilities.
func (o *Origin) buildPlans(ladders []LadderRule) []*ladderPlan {
	t, c := &o.Transcode, o.tr.caps
	var plans []*ladderPlan
	for k, r := range ladders {
		p := &ladderPlan{rule: r}
		if len(r.Ladder.Renditions) > 0 {
			pol := r.fallback(t.Fallback)
			enc, err := transcode.Choose(t.Encoder, pol, c, r.Ladder)
			switch {
			case errors.Is(err, transcode.ErrNoGPU):
				p.reason, p.refuse = refuseNoGPU, "no GPU encoder and fallback is "+string(pol)
			case err != nil:
				p.reason, p.refuse = refuseNoEncoder, err.Error()
			default:
				p.encoder = enc
			}
			o.Log.Info("transcode ladder", "index", k, "match", r.Match, "renditions", len(r.Ladder.Renditions),
				"encoder", string(p.encoder), "refused", p.refuse)
		}
		plans = append(plans, p)
	}
	return plans
}

// ladderPlans returns the current ladder plans.
func (o *Origin) ladderPlans() []*ladderPlan {
	if p := o.tr.plans.Load(); p != nil {
		return *p
	}
	return nil
}

// planFor returns the ladder plan of path; nil for passthrough (no rule
// matches, or the rule has no rendition to transcode).
func (o *Origin) planFor(p string) *ladderPlan {
	for _, pl := range o.ladderPlans() {
		if ok, _ := path.Match(pl.rule.Match, p); ok {
			if len(pl.rule.Ladder.Renditions) == 0 {
				return nil
			}
			return pl
		}
	}
	return nil
}

// admitLocked decides whether a stream with plan may be claimed now; it
// returns the refusal label and message otherwise. o.mu is held.
func (o *Origin) admitLocked(pl *ladderPlan) (string, string) {
	if pl == nil {
		return "", ""
	}
	if pl.refuse != "" {
		return pl.reason, pl.refuse
	}
	limit := o.tr.cpuSlots
	if pl.encoder == transcode.EncoderNVENC {
		limit = o.tr.gpuSlots
	}
	if o.slotsUsedLocked(pl.encoder) >= limit {
		return refuseNoSlot, fmt.Sprintf("all %d %s transcode slots are taken", limit, slotKind(pl.encoder))
	}
	return "", ""
}

func slotKind(e transcode.Encoder) string {
	if e == transcode.EncoderNVENC {
		return "gpu"
	}
	return "cpu"
}

// slotsUsedLocked counts the streams held that transcode with enc.
func (o *Origin) slotsUsedLocked(enc transcode.Encoder) int {
	n := 0
	for _, s := range o.streams {
		if s.plan != nil && s.plan.encoder == enc {
			n++
		}
	}
	return n
}

// noteRefusedLocked records a refusal; it logs and counts it once per
// stream (until the stream is claimed, taken elsewhere or gone).
func (o *Origin) noteRefusedLocked(p, reason, msg string) {
	if _, seen := o.refused[p]; seen {
		o.refused[p] = msg
		return
	}
	o.refused[p] = msg
	o.tr.refused.WithLabelValues(reason).Inc()
	o.Log.Warn("stream not claimed: cannot transcode it here", "stream", p, "reason", msg)
}

// clearRefused forgets the refusal of p.
func (o *Origin) clearRefused(p string) {
	o.mu.Lock()
	delete(o.refused, p)
	o.mu.Unlock()
}

// updateSlotGaugesLocked refreshes the slots-used gauges.
func (o *Origin) updateSlotGaugesLocked() {
	if !o.tr.enabled {
		return
	}
	o.tr.inUse.WithLabelValues("gpu").Set(float64(o.slotsUsedLocked(transcode.EncoderNVENC)))
	o.tr.inUse.WithLabelValues("cpu").Set(float64(o.slotsUsedLocked(transcode.EncoderX264)))
}

// Capabilities reports what the encoder probe found and how the transcode
// slots are used. Enabled is false when no ladder is configured.
func (o *Origin) Capabilities() TranscodeStatus {
	st := TranscodeStatus{Enabled: o.tr.enabled, Capabilities: o.tr.caps,
		GPUSessions: o.tr.gpuSlots, CPUSlots: o.tr.cpuSlots}
	if o.started {
		o.mu.RLock()
		st.GPUInUse = o.slotsUsedLocked(transcode.EncoderNVENC)
		st.CPUInUse = o.slotsUsedLocked(transcode.EncoderX264)
		o.mu.RUnlock()
	}
	for _, p := range o.ladderPlans() {
		st.Ladders = append(st.Ladders, LadderStatus{Match: p.rule.Match, Encoder: string(p.encoder), Refused: p.refuse})
	}
	return st
}
