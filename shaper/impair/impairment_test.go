package impair

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/edgefault/edgefault/units"
)

func TestParseDirection(t *testing.T) {
	for in, want := range map[string]Direction{"egress": Egress, " Ingress ": Ingress, "BOTH": Both, "": Both} {
		if got, err := ParseDirection(in); err != nil || got != want {
			t.Errorf("ParseDirection(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseDirection("up"); err == nil {
		t.Error("ParseDirection(up) succeeded")
	}
	if !Both.Has(Egress) || !Both.Has(Ingress) || Egress.Has(Ingress) || !Ingress.Has(Ingress) {
		t.Error("Direction.Has is wrong")
	}
}

func TestValidate(t *testing.T) {
	ok := Impairment{Rate: 5 * units.Mbit, Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 2}
	if err := ok.Validate(); err != nil || ok.Direction != Both {
		t.Fatalf("Validate = %v, direction %q; want nil, both", err, ok.Direction)
	}
	for _, tc := range []struct {
		imp  Impairment
		want string
	}{
		{Impairment{Loss: 101}, "out of range"},
		{Impairment{Delay: -time.Millisecond}, "negative"},
		{Impairment{Delay: time.Millisecond, Jitter: 2 * time.Millisecond}, "larger than delay"},
		{Impairment{Delay: 2 * time.Minute}, "longer than a minute"},
		{Impairment{Rate: units.Kbit}, "below 8kbit"},
		{Impairment{UpRate: units.Kbit}, "up rate 1kbit is below 8kbit"},
		{Impairment{DownRate: 2 * units.Mbit, Direction: Egress}, "down rate (2mbit) on a link impaired only egress"},
		{Impairment{UpRate: 2 * units.Mbit, Direction: Ingress}, "up rate (2mbit) on a link impaired only ingress"},
		{Impairment{Direction: "sideways"}, "direction"},
		{Impairment{Targets: []netip.Prefix{netip.MustParsePrefix("fd00::/64")}}, "IPv4"},
	} {
		if err := tc.imp.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Validate = %v; want an error containing %q", tc.imp, err, tc.want)
		}
	}
}

func TestString(t *testing.T) {
	if s := (Impairment{}).String(); s != "none" || !(Impairment{}).IsZero() {
		t.Errorf("zero impairment: %q", s)
	}
	imp := Impairment{Outage: true, Rate: units.Mbit, Delay: 200 * time.Millisecond, Jitter: 20 * time.Millisecond, Loss: 2,
		Direction: Egress, Targets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}
	want := "outage, rate 1mbit, delay 200ms±20ms, loss 2%, direction egress, to 10.0.0.0/24"
	if s := imp.String(); s != want {
		t.Errorf("String = %q; want %q", s, want)
	}
	for _, tc := range []struct {
		imp  Impairment
		want string
	}{
		{Impairment{DownRate: 20 * units.Mbit, UpRate: 3 * units.Mbit}, "rate 20mbit down / 3mbit up, direction both"},
		{Impairment{Rate: 5 * units.Mbit, UpRate: units.Mbit}, "rate 5mbit down / 1mbit up, direction both"},
		{Impairment{UpRate: units.Mbit}, "rate 1mbit up, direction both"},
		{Impairment{Rate: 5 * units.Mbit, UpRate: 5 * units.Mbit}, "rate 5mbit, direction both"},
		{Impairment{Rate: 5 * units.Mbit, DownRate: units.Mbit, Direction: Egress}, "rate 5mbit, direction egress"},
	} {
		if s := tc.imp.String(); s != tc.want {
			t.Errorf("%+v: String = %q; want %q", tc.imp, s, tc.want)
		}
	}
}

func TestParseTargets(t *testing.T) {
	got, err := ParseTargets([]string{"10.0.0.7/24, 192.168.1.1", "", "172.16.0.0/12"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("192.168.1.1/32"), netip.MustParsePrefix("172.16.0.0/12")}
	if len(got) != len(want) {
		t.Fatalf("ParseTargets = %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ParseTargets[%d] = %v; want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com"} {
		if _, err := ParseTargets([]string{bad}); err == nil {
			t.Errorf("ParseTargets(%q) succeeded", bad)
		}
	}
}
