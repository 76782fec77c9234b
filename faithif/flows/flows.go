package flows

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/relay"
)

// SchemaVersion is the version of the Table's JSON form. It changes only
// when a key is renamed or removed, or its meaning changes.
const SchemaVersion = 1

// Table is the flows of one or more running interfaces.
type Table struct {
	// SchemaVersion is the version of this form: SchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// Flows are sorted as Sort sorts them.
	Flows []Flow `json:"flows"`
}

// Flow is one flow a faithN's relay is setting up or relaying.
type Flow struct {
	// Interface is the faithN that captured the flow.
	Interface string `json:"interface"`
	// Client is the IPv6 client's address and port; Dst6 the FAITH
	// address and port it connected to.
	Client netip.AddrPort `json:"client"`
	Dst6   netip.AddrPort `json:"dst6"`
	// Src4 is the IPv4 connection's own address and port (empty, "",
	// while the flow is in its handshake); Dst4 the IPv4 server.
	Src4 netip.AddrPort `json:"src4"`
	Dst4 netip.AddrPort `json:"dst4"`
	// State is one of relay.FlowStates: handshake, established,
	// half_closed_by_client, half_closed_by_server, closing, draining.
	State string `json:"state"`
	// AgeSeconds is the time since the flow's SYN was taken up;
	// IdleSeconds the time since data last moved either way.
	AgeSeconds  float64 `json:"age_seconds"`
	IdleSeconds float64 `json:"idle_seconds"`
	// Payload bytes relayed each way (the flow's share of the metric
	// faithif_bytes_total).
	BytesClientToServer uint64 `json:"bytes_client_to_server"`
	BytesServerToClient uint64 `json:"bytes_server_to_client"`
}

// Build returns the table of the flows of the interface iface that f
// selects, sorted.
func Build(iface string, snapshot []relay.FlowInfo, f Filter) Table {
	t := Table{SchemaVersion: SchemaVersion, Flows: []Flow{}}
	for _, fi := range snapshot {
		fl := Flow{
			Interface:           iface,
			Client:              fi.Client,
			Dst6:                fi.Dst6,
			Src4:                fi.Src4,
			Dst4:                fi.Dst4,
			State:               fi.State.String(),
			AgeSeconds:          fi.Age.Seconds(),
			IdleSeconds:         fi.Idle.Seconds(),
			BytesClientToServer: fi.BytesClientToServer,
			BytesServerToClient: fi.BytesServerToClient,
		}
		if f.Matches(&fl) {
			t.Flows = append(t.Flows, fl)
		}
	}
	Sort(t.Flows)
	return t
}

// Sort sorts flows by interface, client address, client port, then
// destination: an order that does not change while the flows run, so that
// scripts can compare one listing with the next. (A client address and
// port with a destination is one flow of an interface.)
func Sort(flows []Flow) {
	slices.SortFunc(flows, func(a, b Flow) int {
		return cmp.Or(
			faithif.CompareNames(a.Interface, b.Interface),
			a.Client.Compare(b.Client),
			a.Dst6.Compare(b.Dst6),
		)
	})
}

// Decode reads a Table in its JSON form strictly: the schema version must
// be SchemaVersion, and an unknown key is an error, so that a renamed key
// cannot read as zero.
func Decode(data []byte) (*Table, error) {
	var t Table
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("flows: %w", err)
	}
	if t.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("flows: schema_version %d, want %d", t.SchemaVersion, SchemaVersion)
	}
	return &t, nil
}
