package auth

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
	"mellium.im/xmpp/jid"
)

// ErrInvalidNumber means a string is not an address: not a valid phone
// number, or one of a region that is not allowed. Errors from Parse wrap it
// with detail.
var ErrInvalidNumber = errors.New("invalid phone number")

// ErrCannotReceiveSMS means a valid number of a kind that cannot receive an
// SMS (premium rate, shared cost, toll free, …). SPEC "Addresses" says such
// numbers are not addresses either, so errors.Is(ErrCannotReceiveSMS,
// ErrInvalidNumber) is true; callers that need the distinction (the HTTP API
// answers with its own text) check for this one first.
var ErrCannotReceiveSMS error = cannotReceiveSMSError{}

type cannotReceiveSMSError struct{}

func (cannotReceiveSMSError) Error() string { return "number cannot receive SMS" }

// Is makes the error also match ErrInvalidNumber.
func (cannotReceiveSMSError) Is(target error) bool { return target == ErrInvalidNumber }

// ErrRegionNotAllowed means a valid number of a region outside
// XMPPD_ALLOWED_REGIONS. It is not an address either, so it also matches
// ErrInvalidNumber; the app API tells it apart (451, SPEC.md "App API").
var ErrRegionNotAllowed error = regionNotAllowedError{}

type regionNotAllowedError struct{}

func (regionNotAllowedError) Error() string { return "region not allowed" }

// Is makes the error also match ErrInvalidNumber.
func (regionNotAllowedError) Is(target error) bool { return target == ErrInvalidNumber }

const (
	// maxNumberInput bounds what is handed to libphonenumber: no real
	// number written with separators comes near it.
	maxNumberInput = 64
	// numberCacheSize bounds the parse cache; it is cleared when full, which
	// costs one re-parse per hot number and needs no eviction bookkeeping.
	numberCacheSize = 10000
	// maxE164Digits is the E.164 limit on digits after the plus sign.
	maxE164Digits = 15
)

// NumberParser turns the forms of a phone number that people write into the
// canonical Number (SPEC "Addresses"). It is safe for concurrent use.
type NumberParser struct {
	defaultRegion string
	allowed       map[string]bool // empty: every region

	mu    sync.RWMutex
	cache map[string]parsed
}

// parsed is one cached outcome of Parse, kept for failures too because a
// flood of stanzas to one bad address must not cost a parse each.
type parsed struct {
	number Number
	typ    phonenumbers.PhoneNumberType
	err    error
}

// NewNumberParser returns a parser that reads national forms as numbers of
// defaultRegion and accepts only numbers of the allowed regions (nil or
// empty: every region). Regions are ISO 3166 alpha-2 codes, case-insensitive.
func NewNumberParser(defaultRegion string, allowed []string) (*NumberParser, error) {
	supported := phonenumbers.GetSupportedRegions()
	p := &NumberParser{
		defaultRegion: strings.ToUpper(strings.TrimSpace(defaultRegion)),
		allowed:       make(map[string]bool, len(allowed)),
		cache:         make(map[string]parsed),
	}
	if p.defaultRegion == "" {
		return nil, errors.New("auth: default region is required")
	}
	if !supported[p.defaultRegion] {
		return nil, fmt.Errorf("auth: unknown default region %q", defaultRegion)
	}
	for _, r := range allowed {
		code := strings.ToUpper(strings.TrimSpace(r))
		if code == "" {
			continue // tolerate "KR,,US" and a trailing comma in configuration
		}
		if !supported[code] {
			return nil, fmt.Errorf("auth: unknown allowed region %q", r)
		}
		p.allowed[code] = true
	}
	return p, nil
}

// Parse returns the canonical E.164 form of s. It accepts digits, spaces,
// dashes, dots, parentheses and a leading plus sign; national forms are read
// in the default region. Errors match ErrInvalidNumber, and also
// ErrCannotReceiveSMS for valid numbers of a kind that cannot get an SMS.
func (p *NumberParser) Parse(s string) (Number, error) {
	r := p.lookup(s)
	return r.number, r.err
}

// IsFixedLine reports whether n is known to be a fixed line (no SMS; a
// voice call can still reach it). FIXED_LINE_OR_MOBILE numbers are not.
func (p *NumberParser) IsFixedLine(n Number) bool {
	r := p.lookup(string(n))
	return r.err == nil && r.typ == phonenumbers.FIXED_LINE
}

func (p *NumberParser) lookup(s string) parsed {
	if len(s) > maxNumberInput {
		// Not cached: the cache is bounded by entries, not bytes.
		return parsed{err: fmt.Errorf("%w: longer than %d bytes", ErrInvalidNumber, maxNumberInput)}
	}
	p.mu.RLock()
	r, ok := p.cache[s]
	p.mu.RUnlock()
	if ok {
		return r
	}
	r = p.parse(s)
	p.mu.Lock()
	if len(p.cache) >= numberCacheSize {
		clear(p.cache)
	}
	// Clone so that the key does not pin a larger buffer s was cut from.
	p.cache[strings.Clone(s)] = r
	p.mu.Unlock()
	return r
}

func (p *NumberParser) parse(s string) parsed {
	invalid := func(format string, args ...any) parsed {
		return parsed{err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidNumber}, args...)...)}
	}
	s = strings.Trim(s, " ")
	if s == "" {
		return invalid("empty")
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		case c == '+' && i == 0:
		default:
			// Letters (vanity numbers, "ext"), '#', '*', "tel:" and non-ASCII
			// digits are all refused so that one number has few spellings.
			return invalid("character %q not allowed", c)
		}
	}
	if digits == 0 {
		return invalid("no digits")
	}
	pn, err := parseNumber(s, p.defaultRegion)
	if err != nil {
		return invalid("%v", err)
	}
	if !phonenumbers.IsValidNumber(pn) || pn.GetExtension() != "" {
		return invalid("not a valid number")
	}
	region := phonenumbers.GetRegionCodeForNumber(pn)
	if len(p.allowed) > 0 && !p.allowed[region] {
		return parsed{err: fmt.Errorf("%w: %s", ErrRegionNotAllowed, region)}
	}
	n := Number(phonenumbers.Format(pn, phonenumbers.E164))
	if !isCanonical(n) {
		return invalid("no canonical form")
	}
	typ := phonenumbers.GetNumberType(pn)
	switch typ {
	case phonenumbers.MOBILE, phonenumbers.FIXED_LINE, phonenumbers.FIXED_LINE_OR_MOBILE,
		phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER:
		return parsed{number: n, typ: typ}
	default:
		return parsed{typ: typ, err: fmt.Errorf("%w: %s is %s", ErrCannotReceiveSMS, n, typeName(typ))}
	}
}

// parseNumber calls libphonenumber, turning a panic into an error: it is a
// large port of regular-expression code, and addresses come from the network.
func parseNumber(s, region string) (pn *phonenumbers.PhoneNumber, err error) {
	defer func() {
		if r := recover(); r != nil {
			pn, err = nil, fmt.Errorf("parser failure: %v", r)
		}
	}()
	return phonenumbers.Parse(s, region)
}

func typeName(t phonenumbers.PhoneNumberType) string {
	switch t {
	case phonenumbers.TOLL_FREE:
		return "toll free"
	case phonenumbers.PREMIUM_RATE:
		return "premium rate"
	case phonenumbers.SHARED_COST:
		return "shared cost"
	case phonenumbers.UAN:
		return "a universal access number"
	case phonenumbers.VOICEMAIL:
		return "a voicemail access number"
	default:
		return "of unknown type"
	}
}

// isCanonical reports whether n looks like E.164 with a plus sign. It is a
// cheap guard for Numbers that did not come from Parse (e.g. from a store).
func isCanonical(n Number) bool {
	if len(n) < 2 || len(n) > 1+maxE164Digits || n[0] != '+' || n[1] == '0' {
		return false
	}
	for i := 1; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return false
		}
	}
	return true
}

// CanonicalJID returns the bare JID +E164@domain under which the server
// answers and routes for n. It fails for a Number not in canonical form or
// a domain that is not a valid domainpart.
func CanonicalJID(n Number, domain string) (jid.JID, error) {
	if !isCanonical(n) {
		return jid.JID{}, fmt.Errorf("%w: %q is not in E.164 form", ErrInvalidNumber, string(n))
	}
	j, err := jid.New(string(n), domain, "")
	if err != nil {
		return jid.JID{}, fmt.Errorf("auth: canonical JID of %s: %w", n, err)
	}
	return j, nil
}
