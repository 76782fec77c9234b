package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// Decode reads one Status in its JSON form, strictly: every key Fields
// describes must be there and no other, so that a renamed or dropped key is
// an error instead of a silent zero.
func Decode(data []byte) (*Status, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	var missing []string
	for _, f := range Fields() {
		if _, ok := keys[f.JSON]; !ok {
			missing = append(missing, f.JSON)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("status: keys missing: %v", missing)
	}
	st := new(Status)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(st); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if st.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("status: schema_version %d, want %d", st.SchemaVersion, SchemaVersion)
	}
	return st, nil
}

// DecodeList reads a JSON array of Status values (`faithif list --json`),
// each as strictly as Decode.
func DecodeList(data []byte) ([]Status, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	out := make([]Status, 0, len(raws))
	for i, raw := range raws {
		st, err := Decode(raw)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out = append(out, *st)
	}
	return out, nil
}
