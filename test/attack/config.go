package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// config is the run's knobs (see the package documentation).
type config struct {
	quick   bool
	rows    map[int]bool
	verbose bool
	out     string

	deadline, settle                     time.Duration
	legitInterval, legitOK, legitTimeout time.Duration
	ptbMBps                              float64
	ptbDownloads, ptbSpray               int
	ptbWindow                            time.Duration
	synCount                             int
	synRate                              float64
	synRateSet                           bool
	legitRTT, release                    time.Duration
	slowCount                            int
	slowRate                             float64
	bigCount                             int
	bigRate                              float64
	bigRateSet                           bool
	rssAfter                             time.Duration
	rssCapMB, rssReturnMB                float64
	logCount                             int
	logRate, logLinesPerSec              float64
	logRateSet                           bool
	lanConns, lanAddrs                   int
	ctlMB, flagsCount, flows             int

	// capacity is the attacker's send rate, measured once per run by the
	// first row that needs it (env.sendCapacity).
	capacity *sendCapacity
}

// sendCapacity is how many SYNs a second the attacker can send through
// the router, measured once.
type sendCapacity struct {
	once sync.Once
	rate float64
	err  error
}

// allRows are the rows, in order.
var allRows = []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

// loadConfig reads the knobs from the environment; errs lists every bad
// value.
func loadConfig() (*config, error) {
	var errs []string
	e := envReader{errs: &errs}
	c := &config{quick: e.bool("ATTACK_QUICK"), verbose: e.bool("ATTACK_VERBOSE"), out: os.Getenv("ATTACK_OUT"), capacity: &sendCapacity{}}
	q := func(full, quick float64) float64 {
		if c.quick {
			return quick
		}
		return full
	}
	qd := func(full, quick time.Duration) time.Duration {
		if c.quick {
			return quick
		}
		return full
	}
	c.rows = map[int]bool{}
	if s := os.Getenv("ATTACK_ROWS"); s != "" {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 || n > len(allRows) {
				errs = append(errs, fmt.Sprintf("ATTACK_ROWS: %q is not a row (1 to %d)", f, len(allRows)))
				continue
			}
			c.rows[n] = true
		}
	} else {
		for _, r := range allRows {
			c.rows[r] = true
		}
	}
	c.deadline = e.dur("ATTACK_DEADLINE", qd(840*time.Second, 300*time.Second))
	c.settle = e.dur("ATTACK_SETTLE", qd(5*time.Second, 2*time.Second))
	c.legitInterval = e.dur("ATTACK_LEGIT_INTERVAL", 200*time.Millisecond)
	c.legitOK = e.dur("ATTACK_LEGIT_OK", 3*time.Second)
	c.legitTimeout = e.dur("ATTACK_LEGIT_TIMEOUT", 10*time.Second)
	c.ptbMBps = e.num("ATTACK_PTB_MBPS", q(10, 5))
	c.ptbDownloads = e.int("ATTACK_PTB_DOWNLOADS", q(5, 2))
	c.ptbWindow = e.dur("ATTACK_PTB_SECONDS", qd(5*time.Second, 2*time.Second))
	c.ptbSpray = e.int("ATTACK_PTB_SPRAY", 28232)
	c.synCount = e.int("ATTACK_SYN_COUNT", q(100000, 20000))
	c.synRate, c.synRateSet = e.numSet("ATTACK_SYN_RATE", q(10000, 5000))
	c.legitRTT = e.dur("ATTACK_LEGIT_RTT", 150*time.Millisecond)
	c.release = e.dur("ATTACK_RELEASE", 60*time.Second)
	c.slowCount = e.int("ATTACK_SLOW_COUNT", q(300, 150))
	c.slowRate = e.num("ATTACK_SLOW_RATE", 10)
	c.bigCount = e.int("ATTACK_BIG_COUNT", q(300000, 30000))
	c.bigRate, c.bigRateSet = e.numSet("ATTACK_BIG_RATE", q(30000, 10000))
	c.rssAfter = e.dur("ATTACK_RSS_AFTER", qd(60*time.Second, 10*time.Second))
	c.rssCapMB = e.num("ATTACK_RSS_CAP_MB", 64) // the README's stated bound, above the idle RSS
	c.rssReturnMB = e.num("ATTACK_RSS_RETURN_MB", 32)
	c.logCount = e.int("ATTACK_LOG_COUNT", q(50000, 10000))
	c.logRate, c.logRateSet = e.numSet("ATTACK_LOG_RATE", q(10000, 5000))
	c.logLinesPerSec = e.num("ATTACK_LOG_LINES_PER_S", 150)
	c.lanConns = e.int("ATTACK_LAN_CONNS", q(10000, 5000))
	c.lanAddrs = e.int("ATTACK_LAN_ADDRS", q(100, 20))
	c.ctlMB = e.int("ATTACK_CTL_MB", q(256, 64))
	c.flagsCount = e.int("ATTACK_FLAGS_COUNT", q(100, 20))
	c.flows = e.int("ATTACK_LINKDEL_FLOWS", 20)
	if c.lanAddrs < 1 || c.lanAddrs > 60000 {
		errs = append(errs, fmt.Sprintf("ATTACK_LAN_ADDRS: %d: want 1 to 60000", c.lanAddrs))
	}
	if c.slowRate <= 0 {
		errs = append(errs, fmt.Sprintf("ATTACK_SLOW_RATE: %v: want > 0", c.slowRate))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return c, nil
}

// envReader reads typed knobs, collecting errors.
type envReader struct{ errs *[]string }

func (e envReader) bad(key, v, want string) {
	*e.errs = append(*e.errs, fmt.Sprintf("%s=%q: want %s", key, v, want))
}

func (e envReader) bool(key string) bool {
	switch v := os.Getenv(key); v {
	case "", "0", "false", "no":
		return false
	case "1", "true", "yes":
		return true
	default:
		e.bad(key, v, "1 or 0")
		return false
	}
}

func (e envReader) numSet(key string, def float64) (float64, bool) {
	v := os.Getenv(key)
	if v == "" {
		return def, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		e.bad(key, v, "a number >= 0")
		return def, false
	}
	return f, true
}

func (e envReader) num(key string, def float64) float64 {
	f, _ := e.numSet(key, def)
	return f
}

func (e envReader) int(key string, def float64) int {
	v := os.Getenv(key)
	if v == "" {
		return int(def)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		e.bad(key, v, "a whole number >= 1")
		return int(def)
	}
	return n
}

func (e envReader) dur(key string, def time.Duration) time.Duration {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.bad(key, v, `a duration such as "90s" or a number of seconds`)
		return def
	}
	return d
}
