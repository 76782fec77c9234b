package faithif

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/tun"
)

// DefaultMTU is faith(4)'s MTU.
const DefaultMTU = 1500

// MinMTU and MaxMTU bound the MTU an interface may have: IPv6's minimum and
// the largest IPv6 packet without a jumbogram.
const (
	MinMTU = 1280
	MaxMTU = 65535
)

// tunPath is the TUN clone device.
const tunPath = "/dev/net/tun"

var nameRE = regexp.MustCompile(`^faith(0|[1-9][0-9]*)$`)

// ValidateName checks that name is faith<N> and fits in an interface name.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("interface name %q: must be faith<N>, e.g. faith0", name)
	}
	if len(name) > syscall.IFNAMSIZ-1 {
		return fmt.Errorf("interface name %q: longer than %d characters", name, syscall.IFNAMSIZ-1)
	}
	return nil
}

// CompareNames orders interface names as a person would: faith2 before
// faith10 (by N for faith<N>, else as strings).
func CompareNames(a, b string) int {
	na, erra := strconv.Atoi(strings.TrimPrefix(a, "faith"))
	nb, errb := strconv.Atoi(strings.TrimPrefix(b, "faith"))
	if erra == nil && errb == nil && strings.HasPrefix(a, "faith") && strings.HasPrefix(b, "faith") {
		return cmp.Compare(na, nb)
	}
	return strings.Compare(a, b)
}

// ValidateMTU checks an interface MTU.
func ValidateMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return fmt.Errorf("mtu %d: must be between %d (IPv6 minimum) and %d", mtu, MinMTU, MaxMTU)
	}
	return nil
}

// CheckCreate reports what would stop Create before it touches anything:
// no TUN clone device, or an interface of that name already there that
// Create cannot adopt (anything but a persistent TUN device no process has
// open; see Create).
func CheckCreate(name string) error {
	_, err := checkCreate(name)
	return err
}

// checkCreate is CheckCreate; it also returns the persistent TUN device of
// that name that Create would adopt, nil if there is none.
func checkCreate(name string) (*netlink.Tuntap, error) {
	if _, err := os.Stat(tunPath); err != nil {
		return nil, fmt.Errorf("create %s: %s is missing (load the tun module or, in a container, pass the device): %w", name, tunPath, err)
	}
	l, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: look up existing links: %w", name, err)
	}
	t, ok := l.(*netlink.Tuntap)
	switch {
	case !ok:
		return nil, fmt.Errorf("create %s: interface already exists (type %s, index %d)", name, l.Type(), l.Attrs().Index)
	case t.NonPersist || t.Queues > 0:
		return nil, fmt.Errorf("create %s: interface already exists (a TUN device in use by another process, index %d)", name, l.Attrs().Index)
	case t.Mode != netlink.TUNTAP_MODE_TUN:
		return nil, fmt.Errorf("create %s: interface already exists (a TAP device, index %d; faithif adopts only a TUN device: ip tuntap add %s mode tun)", name, l.Attrs().Index, name)
	case t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0:
		return nil, fmt.Errorf("create %s: interface already exists (a multi-queue TUN device, index %d; faithif adopts only a single-queue one: ip tuntap add %s mode tun)", name, l.Attrs().Index, name)
	}
	return t, nil
}

// Interface is one emulated faith interface: a TUN device that is up.
type Interface struct {
	name string
	mtu  int
	dev  tun.Device

	// adopted is true for a persistent TUN device that was there before
	// (ip tuntap add): Close leaves it, with its MTU and up/down state as
	// they were (wasMTU, wasUp).
	adopted bool
	wasMTU  int
	wasUp   bool

	mu       sync.Mutex
	routes   []Route         // installed by AddRoutes, removed by Close
	nlRoutes []netlink.Route // the same, as netlink added them
}

// Create makes the TUN device name with the given MTU and brings it up, as
// `ifconfig faithN create up` does. On error nothing is left behind.
//
// A persistent TUN device of that name that no process has open (made by
// `ip tuntap add faithN mode tun`, as a host does for a container without
// the right to create devices) is adopted instead: faithif attaches to it,
// and Close leaves it in place with its MTU and up/down state as they were.
func Create(name string, mtu int) (*Interface, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := ValidateMTU(mtu); err != nil {
		return nil, err
	}
	existing, err := checkCreate(name)
	if err != nil {
		return nil, err
	}
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		if errors.Is(err, syscall.EBUSY) {
			// Another instance created it between the check and now.
			return nil, fmt.Errorf("create %s: interface already exists (in use by another instance)", name)
		}
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("create %s: %w (faithif needs root or CAP_NET_ADMIN and access to %s)", name, err, tunPath)
		}
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	i := &Interface{name: name, mtu: mtu, dev: dev}
	if existing != nil {
		i.adopted, i.wasMTU, i.wasUp = true, existing.Attrs().MTU, existing.Attrs().Flags&net.FlagUp != 0
	}
	link, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetUp(link)
	}
	if err != nil {
		i.restore()
		dev.Close()
		return nil, fmt.Errorf("create %s: set link up: %w", name, err)
	}
	return i, nil
}

// Adopted reports whether the interface is a persistent TUN device that was
// there before faithif (and stays after it).
func (i *Interface) Adopted() bool { return i.adopted }

// restore puts an adopted device's MTU and up/down state back as they were.
func (i *Interface) restore() {
	if !i.adopted {
		return
	}
	link, err := netlink.LinkByName(i.name)
	if err != nil {
		return // gone
	}
	if link.Attrs().MTU != i.wasMTU {
		netlink.LinkSetMTU(link, i.wasMTU)
	}
	if !i.wasUp {
		netlink.LinkSetDown(link)
	}
}

// CheckUp returns nil if the interface is administratively up, else an
// error saying it is down or gone.
func (i *Interface) CheckUp() error {
	link, err := netlink.LinkByName(i.name)
	if err != nil {
		return fmt.Errorf("%s: %w", i.name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s is down", i.name)
	}
	return nil
}

// Name returns the interface's name.
func (i *Interface) Name() string { return i.name }

// MTU returns the interface's MTU.
func (i *Interface) MTU() int { return i.mtu }

// Device returns the TUN device, for the stack to read and write.
func (i *Interface) Device() tun.Device { return i.dev }

// Route is `ip -6 route add PREFIX dev faithN [metric M] [table T]`.
type Route struct {
	Prefix netip.Prefix
	Metric int // 0: the kernel's default for IPv6 (1024)
	Table  int // 0: main
}

// String formats the route as ip(8) would take it, without the device.
func (r Route) String() string {
	s := r.Prefix.String()
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	if r.Table != 0 {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	return s
}

// PrefixRoutes returns a route in the main table for each prefix.
func PrefixRoutes(prefixes []netip.Prefix) []Route {
	rs := make([]Route, len(prefixes))
	for k, p := range prefixes {
		rs[k] = Route{Prefix: p}
	}
	return rs
}

// AddRoutes installs each route through the interface. On error the routes
// it added are removed again. Close removes them.
func (i *Interface) AddRoutes(routes []Route) error {
	link, err := netlink.LinkByName(i.name)
	if err != nil {
		return fmt.Errorf("route via %s: %w", i.name, err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, rt := range routes {
		p := rt.Prefix
		r := netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)},
			Priority: rt.Metric, Table: rt.Table}
		if err := netlink.RouteAdd(&r); err != nil {
			i.removeRoutesLocked()
			if errors.Is(err, syscall.EEXIST) {
				return fmt.Errorf("route %s dev %s: such a route already exists", rt, i.name)
			}
			return fmt.Errorf("route %s dev %s: %w", rt, i.name, err)
		}
		i.routes = append(i.routes, rt)
		i.nlRoutes = append(i.nlRoutes, r)
	}
	return nil
}

// Routes returns the routes AddRoutes installed, as "PREFIX [metric M]
// [table T]".
func (i *Interface) Routes() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	var s []string
	for _, r := range i.routes {
		s = append(s, r.String())
	}
	return s
}

func (i *Interface) removeRoutesLocked() {
	for _, r := range i.nlRoutes {
		netlink.RouteDel(&r) // gone already if the link was deleted
	}
	i.routes, i.nlRoutes = nil, nil
}

// Close removes the routes AddRoutes installed and the interface (a TUN
// device that is not persistent goes away when its last file descriptor
// closes); an adopted one stays, as it was. It may be called more than once.
func (i *Interface) Close() error {
	i.mu.Lock()
	i.removeRoutesLocked()
	i.mu.Unlock()
	i.restore()
	if err := i.dev.Close(); err != nil {
		return fmt.Errorf("destroy %s: %w", i.name, err)
	}
	return nil
}

// IsLocalIPv4 reports whether a is an IPv4 address of this machine (of the
// current network namespace).
func IsLocalIPv4(a netip.Addr) bool {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if b, ok := netip.AddrFromSlice(x.IP.To4()); ok && b == a {
			return true
		}
	}
	return false
}
