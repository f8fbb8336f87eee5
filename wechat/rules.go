package wechat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds of a notification's data.
const (
	maxDataKeys    = 20
	maxDataBytes   = 4 << 10
	maxKeyLength   = 64
	maxOtherLength = 200 // values of types without a documented rule
)

// CheckData checks subscribe-message data, {"thing1": {"value": "..."},
// ...}, against WeChat's value rules (订阅消息参数值内容限制), so that a bad
// value is refused before anything is queued rather than failing at send
// time with 47003. A key's type is its prefix before the digits (thing1 is
// a thing, amount12 an amount). The error is a BAD_USER_INPUT *Error that
// names the key.
func CheckData(data json.RawMessage) error {
	_, err := normalizeData(data)
	return err
}

// normalizeData checks data and returns it compact, each value a JSON
// string (a number given as a JSON number becomes its text).
func normalizeData(data json.RawMessage) (json.RawMessage, error) {
	if len(data) > maxDataBytes {
		return nil, badInput("notify.data: at most %d bytes, got %d", maxDataBytes, len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, badInput(`notify.data: must be an object like {"thing1": {"value": "..."}}`)
	}
	type item struct {
		Value string `json:"value"`
	}
	out := map[string]item{}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, badInput("notify.data: invalid JSON")
		}
		key, _ := tok.(string)
		if err := checkKey(key); err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			return nil, badInput("notify.data.%s: given twice", key)
		}
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil || raw == nil {
			return nil, badInput(`notify.data.%s: must be an object {"value": "..."}`, key)
		}
		var value string
		for k, v := range raw {
			if k != "value" {
				return nil, badInput(`notify.data.%s: unknown field %q (only "value")`, key, k)
			}
			switch v := v.(type) {
			case string:
				value = v
			case json.Number:
				value = v.String()
			default:
				return nil, badInput("notify.data.%s.value: must be a string", key)
			}
		}
		if _, ok := raw["value"]; !ok {
			return nil, badInput(`notify.data.%s: must be an object {"value": "..."}`, key)
		}
		if err := checkValue(key, value); err != nil {
			return nil, badInput("notify.data.%s.value: %v", key, err)
		}
		out[key] = item{Value: value}
		keys = append(keys, key)
		if len(keys) > maxDataKeys {
			return nil, badInput("notify.data: at most %d keys", maxDataKeys)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, badInput("notify.data: invalid JSON")
	}
	if dec.More() {
		return nil, badInput("notify.data: one JSON object expected")
	}
	if len(keys) == 0 {
		return nil, badInput("notify.data: at least one key, like thing1")
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode data: %w", err)
	}
	return b, nil
}

func checkKey(key string) error {
	if key == "" || len(key) > maxKeyLength || !(key[0] >= 'a' && key[0] <= 'z') {
		return badInput("notify.data: keys are template keys like thing1 or amount2, got %q", key)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return badInput("notify.data: keys are template keys like thing1 or amount2, got %q", key)
		}
	}
	return nil
}

// keyType is the key's prefix before its trailing digits.
func keyType(key string) string { return strings.TrimRight(key, "0123456789") }

// checkValue applies the rule of key's type to v. The error says what the
// rule is, never more of the value than its length.
func checkValue(key, v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	if !utf8.ValidString(v) {
		return errors.New("must be valid UTF-8")
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return errors.New("must not contain control characters (line breaks, tabs)")
		}
	}
	n := utf8.RuneCountInString(v)
	switch keyType(key) {
	case "thing":
		if n > 20 {
			return fmt.Errorf("a thing is at most 20 characters, got %d", n)
		}
	case "number":
		return checkNumber(v)
	case "letter":
		if n > 32 || !all(v, isLetter) {
			return fmt.Errorf("a letter value is 1..32 letters (A-Z, a-z), got %d characters", n)
		}
	case "symbol":
		if n > 5 || !all(v, isSymbol) {
			return fmt.Errorf("a symbol value is 1..5 symbols (no letters, digits or Chinese characters), got %d characters", n)
		}
	case "character_string":
		if n > 32 || !all(v, func(r rune) bool { return isDigit(r) || isLetter(r) || isSymbol(r) }) {
			return fmt.Errorf("a character_string is 1..32 digits, letters or symbols, got %d characters", n)
		}
	case "time":
		if !dateTimeValue(v, false) {
			return errors.New(`a time is a 24-hour time, with an optional date before it ("15:01", "2019年10月1日 15:01", "2019-10-01 15:01:05"), or two joined by "~"`)
		}
	case "date":
		if !dateTimeValue(v, true) {
			return errors.New(`a date is a year, month and day ("2019年10月1日", "2019-10-01", "2019/10/01", "2019.10.01", "2019-10", "10-01"), with an optional 24-hour time after it, or two joined by "~"`)
		}
	case "amount":
		if !amount(v) {
			return errors.New(`an amount is an optional currency symbol, 1..10 digits, up to 2 decimals and an optional trailing 元 ("¥9.90", "100元")`)
		}
	case "phone_number":
		if n > 17 || !all(v, func(r rune) bool { return isDigit(r) || isSymbol(r) || r == ' ' }) || !strings.ContainsFunc(v, isDigit) {
			return fmt.Errorf("a phone_number is 1..17 digits and symbols, got %d characters", n)
		}
	case "car_number":
		if n > 8 || !carNumber(v) {
			return fmt.Errorf("a car_number is at most 8 characters: letters and digits, the first and the last may be Chinese characters, got %d characters", n)
		}
	case "name":
		return checkName(v, n)
	case "phrase":
		if n > 5 || !all(v, isCJK) {
			return fmt.Errorf("a phrase is 1..5 Chinese characters, got %d characters", n)
		}
	default:
		// A type without a documented rule (enum, or one WeChat added
		// since): WeChat checks it.
		if n > maxOtherLength {
			return fmt.Errorf("at most %d characters, got %d", maxOtherLength, n)
		}
	}
	return nil
}

func all(s string, f func(rune) bool) bool {
	for _, r := range s {
		if !f(r) {
			return false
		}
	}
	return true
}

func isDigit(r rune) bool  { return r >= '0' && r <= '9' }
func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
func isCJK(r rune) bool    { return unicode.Is(unicode.Han, r) }

// isSymbol: WeChat's 符号, the common symbols other than Chinese, English
// letters and digits (punctuation and symbols, half- or full-width).
func isSymbol(r rune) bool {
	return !isCJK(r) && (unicode.IsPunct(r) || unicode.IsSymbol(r))
}

// checkNumber: at most 32 digits, with an optional decimal point between
// digits.
func checkNumber(v string) error {
	intPart, frac, hasPoint := strings.Cut(v, ".")
	if intPart == "" || !all(intPart, isDigit) || hasPoint && (frac == "" || !all(frac, isDigit)) {
		return errors.New("a number is digits with an optional decimal point (\"12\", \"3.50\")")
	}
	if d := len(intPart) + len(frac); d > 32 {
		return fmt.Errorf("a number is at most 32 digits, got %d", d)
	}
	return nil
}

// amount: [currency symbol] 1..10 digits [. 1..2 digits] [元].
func amount(v string) bool {
	v = strings.TrimSuffix(v, "元")
	if r, size := utf8.DecodeRuneInString(v); unicode.Is(unicode.Sc, r) {
		v = v[size:]
	}
	intPart, frac, hasPoint := strings.Cut(v, ".")
	if len(intPart) < 1 || len(intPart) > 10 || !all(intPart, isDigit) {
		return false
	}
	return !hasPoint || len(frac) >= 1 && len(frac) <= 2 && all(frac, isDigit)
}

// carNumber: letters and digits, the first and last rune may be Chinese
// (粤A8Z888挂).
func carNumber(v string) bool {
	rs := []rune(v)
	if len(rs) > 0 && isCJK(rs[0]) {
		rs = rs[1:]
	}
	if len(rs) > 0 && isCJK(rs[len(rs)-1]) {
		rs = rs[:len(rs)-1]
	}
	if len(rs) == 0 {
		return false
	}
	for _, r := range rs {
		if !isDigit(r) && !isLetter(r) {
			return false
		}
	}
	return true
}

// checkName: 10 Chinese characters or 20 letters; a name that mixes
// Chinese and letters counts as Chinese. Symbols (· - . ' space) may join
// the parts; digits may not.
func checkName(v string, n int) error {
	chinese := strings.ContainsFunc(v, isCJK)
	if !all(v, func(r rune) bool { return isCJK(r) || isLetter(r) || isSymbol(r) || r == ' ' }) {
		return errors.New("a name is Chinese characters or letters (and symbols), no digits")
	}
	if chinese && n > 10 {
		return fmt.Errorf("a Chinese name is at most 10 characters, got %d", n)
	}
	if !chinese && n > 20 {
		return fmt.Errorf("a name in letters is at most 20 characters, got %d", n)
	}
	if !strings.ContainsFunc(v, func(r rune) bool { return isCJK(r) || isLetter(r) }) {
		return errors.New("a name has at least one letter or Chinese character")
	}
	return nil
}

// dateTimeValue: a time (date optional, clock required) or, when isDate,
// a date (clock optional); or two of them joined by "~".
func dateTimeValue(v string, isDate bool) bool {
	if a, b, ok := strings.Cut(v, "~"); ok {
		return dateTime(strings.TrimSpace(a), isDate) && dateTime(strings.TrimSpace(b), isDate)
	}
	return dateTime(v, isDate)
}

func dateTime(v string, isDate bool) bool {
	if v == "" {
		return false
	}
	datePart, clockPart := v, ""
	if i := strings.LastIndexByte(v, ' '); i >= 0 {
		datePart, clockPart = strings.TrimSpace(v[:i]), v[i+1:]
		if datePart == "" {
			return false
		}
		return validDate(datePart) && validClock(clockPart)
	}
	if isDate {
		return validDate(v)
	}
	// A time alone, or a 年月日 date glued to its time (2019年10月1日15:01).
	if validClock(v) {
		return true
	}
	if i := strings.LastIndex(v, "日"); i >= 0 {
		return validDate(v[:i+len("日")]) && validClock(v[i+len("日"):])
	}
	return false
}

// validClock: H:MM or H:MM:SS, 24-hour.
func validClock(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	if !num(parts[0], 1, 2, 0, 23) {
		return false
	}
	for _, p := range parts[1:] {
		if !num(p, 2, 2, 0, 59) {
			return false
		}
	}
	return true
}

// validDate: y年m月d日, y年m月, m月d日, or y-m-d, y-m, m-d with '-', '/' or
// '.' (one separator throughout).
func validDate(s string) bool {
	if strings.Contains(s, "月") {
		y, rest, hasYear := strings.Cut(s, "年")
		if !hasYear {
			rest = s
		} else if !num(y, 4, 4, 1, 9999) {
			return false
		}
		m, d, _ := strings.Cut(rest, "月")
		if !num(m, 1, 2, 1, 12) {
			return false
		}
		if d == "" {
			return hasYear // y年m月
		}
		day, ok := strings.CutSuffix(d, "日")
		return ok && num(day, 1, 2, 1, 31)
	}
	for _, sep := range []string{"-", "/", "."} {
		if !strings.Contains(s, sep) {
			continue
		}
		p := strings.Split(s, sep)
		switch {
		case len(p) == 3:
			return num(p[0], 4, 4, 1, 9999) && num(p[1], 1, 2, 1, 12) && num(p[2], 1, 2, 1, 31)
		case len(p) == 2 && len(p[0]) == 4:
			return num(p[0], 4, 4, 1, 9999) && num(p[1], 1, 2, 1, 12)
		case len(p) == 2:
			return num(p[0], 1, 2, 1, 12) && num(p[1], 1, 2, 1, 31)
		}
		return false
	}
	return false
}

// num: minLen..maxLen ASCII digits whose value is in lo..hi.
func num(s string, minLen, maxLen, lo, hi int) bool {
	if len(s) < minLen || len(s) > maxLen || !all(s, isDigit) {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n >= lo && n <= hi
}
