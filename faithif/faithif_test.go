package faithif

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"faith0", "faith1", "faith42", "faith1234567890"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v; want ok", ok, err)
		}
	}
	for _, bad := range []string{"", "faith", "eth0", "faithX", "faith-1", "faith01", "Faith0", "faith0 ", "xfaith0", "faith12345678901"} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) = nil; want an error", bad)
		}
	}
}

func TestCompareNames(t *testing.T) {
	names := []string{"faith10", "faith2", "faith0", "faith1", "faith9"}
	slices.SortFunc(names, CompareNames)
	if want := []string{"faith0", "faith1", "faith2", "faith9", "faith10"}; !slices.Equal(names, want) {
		t.Errorf("sorted %v, want %v", names, want)
	}
}

func TestValidateMTU(t *testing.T) {
	for _, ok := range []int{1280, 1500, 9000, 65535} {
		if err := ValidateMTU(ok); err != nil {
			t.Errorf("ValidateMTU(%d) = %v", ok, err)
		}
	}
	for _, bad := range []int{0, -1, 1279, 65536} {
		if err := ValidateMTU(bad); err == nil {
			t.Errorf("ValidateMTU(%d) = nil; want an error", bad)
		}
	}
}

func TestKeepFaithPersists(t *testing.T) {
	d := RunDir(filepath.Join(t.TempDir(), "run"))
	if on, err := d.KeepFaith(); err != nil || on {
		t.Fatalf("fresh KeepFaith = %v, %v; want 0 (the BSD default)", on, err)
	}
	for _, v := range []bool{true, false, true} {
		if err := d.SetKeepFaith(v); err != nil {
			t.Fatal(err)
		}
		if on, err := d.KeepFaith(); err != nil || on != v {
			t.Fatalf("KeepFaith = %v, %v; want %v", on, err, v)
		}
	}
	os.WriteFile(d.keepFaithPath(), []byte("maybe\n"), 0o644)
	if _, err := d.KeepFaith(); err == nil || !strings.Contains(err.Error(), "want 0 or 1") {
		t.Fatalf("KeepFaith with a corrupt file = %v; want an error naming the problem", err)
	}
}
