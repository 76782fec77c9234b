package instance

import (
	"errors"
	"fmt"
	"sync"

	"github.com/faithif/faithif/faithif/status"
)

// Set is the instances one process serves, as its metrics describe them
// (it implements metrics.Source): those started so far, and the names of
// every one it is to run.
type Set struct {
	mu    sync.Mutex
	list  []*Instance
	names []string
}

// NewSet returns an empty Set that is to run the interfaces names.
func NewSet(names ...string) *Set { return &Set{names: names} }

// Add adds a started instance.
func (s *Set) Add(in *Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, in)
}

// All returns the instances added so far, in order.
func (s *Set) All() []*Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Instance(nil), s.list...)
}

// Statuses implements metrics.Source: the status of every running
// instance.
func (s *Set) Statuses() []status.Status {
	var out []status.Status
	for _, in := range s.All() {
		if in.Running() {
			out = append(out, in.Status())
		}
	}
	return out
}

// Ready implements metrics.Source: nil once every instance of the set runs
// and is ready, else every reason why not.
func (s *Set) Ready() error {
	ins := s.All()
	if len(ins) == 0 {
		return errors.New("no interface is running")
	}
	var errs []error
	started := map[string]bool{}
	for _, in := range ins {
		started[in.Name()] = true
	}
	for _, name := range s.names {
		if !started[name] {
			errs = append(errs, fmt.Errorf("%s is not running yet", name))
		}
	}
	for _, in := range ins {
		if err := in.Ready(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
