package netlab

import (
	"fmt"
	"syscall"
	"unsafe"
)

// Offloads of a network interface, for SetOffloads: what "ethtool -K DEV
// tso off gso off gro off" sets, without needing ethtool(8).
type Offloads struct {
	// TSO is TCP segmentation offload (every TSO kind); GSO generic
	// segmentation offload; GRO generic receive offload.
	TSO, GSO, GRO bool
}

// The legacy ethtool commands (linux/ethtool.h) for the offloads: each
// takes a struct ethtool_value {u32 cmd; u32 data}.
const (
	siocEthtool = 0x8946
	ethtoolGTSO = 0x1e
	ethtoolSTSO = 0x1f
	ethtoolGGSO = 0x23
	ethtoolSGSO = 0x24
	ethtoolGGRO = 0x2b
	ethtoolSGRO = 0x2c
	ifNameSize  = 16
	ifreqSize   = 40
)

// SetOffloads switches the offloads of dev in the namespace, e.g. all off
// so that the interface sends and receives one segment per packet, as a
// NIC without them does: a forwarded TSO super-packet is segmented in
// software before it leaves, and nothing merges segments on receipt. It
// reads them back and fails if one did not take.
func (n *Namespace) SetOffloads(dev string, o Offloads) error {
	return n.Do(func() error {
		fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		for _, s := range []struct {
			name     string
			set, get uint32
			on       bool
		}{
			{"tso", ethtoolSTSO, ethtoolGTSO, o.TSO},
			{"gso", ethtoolSGSO, ethtoolGGSO, o.GSO},
			{"gro", ethtoolSGRO, ethtoolGGRO, o.GRO},
		} {
			want := uint32(0)
			if s.on {
				want = 1
			}
			if _, err := ethtoolValueIoctl(fd, dev, s.set, want); err != nil {
				return fmt.Errorf("netlab: %s %s %v in %s: %w", dev, s.name, s.on, n.Name, err)
			}
			got, err := ethtoolValueIoctl(fd, dev, s.get, 0)
			if err != nil {
				return fmt.Errorf("netlab: read %s %s in %s: %w", dev, s.name, n.Name, err)
			}
			if got != want {
				return fmt.Errorf("netlab: %s %s is %d after setting it to %d in %s", dev, s.name, got, want, n.Name)
			}
		}
		return nil
	})
}

// ethtoolValueIoctl runs one legacy ethtool command with a struct
// ethtool_value on dev, and returns the value's data field.
func ethtoolValueIoctl(fd int, dev string, cmd, data uint32) (uint32, error) {
	if len(dev) >= ifNameSize {
		return 0, fmt.Errorf("interface name %q too long", dev)
	}
	val := &[2]uint32{cmd, data}
	ifr := &ifreqData{data: unsafe.Pointer(val)}
	copy(ifr.name[:], dev)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(ifr))); e != 0 {
		return 0, e
	}
	return val[1], nil
}

// ifreqData is struct ifreq with its ifr_data member (a pointer the
// garbage collector sees).
type ifreqData struct {
	name [ifNameSize]byte
	data unsafe.Pointer
	_    [ifreqSize - ifNameSize - 8]byte
}
