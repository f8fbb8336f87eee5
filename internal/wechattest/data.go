package wechattest

import (
	"encoding/json"
	"regexp"
	"strings"
	"unicode/utf8"
)

// The fake's reading of the value rules of subscribe-message data
// (订阅消息参数值内容限制), written apart from package wechat's so that each
// checks the other. A failing key answers 47003 with the key in errmsg, as
// WeChat does ("argument invalid! data.thing1.value invalid").
var (
	han        = `\p{Han}`
	sym        = `[\p{P}\p{S}]`
	clockRe    = `([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?`
	dateRe     = `(\d{4}年\d{1,2}月(\d{1,2}日)?|\d{1,2}月\d{1,2}日|\d{4}([-/.])\d{1,2}(([-/.])\d{1,2})?|\d{1,2}-\d{1,2})`
	timeOne    = `((` + dateRe + `)\s*)?` + clockRe
	dateOne    = dateRe + `(\s*` + clockRe + `)?`
	valueRules = map[string]*regexp.Regexp{
		"number":           regexp.MustCompile(`^\d+(\.\d+)?$`),
		"letter":           regexp.MustCompile(`^[A-Za-z]{1,32}$`),
		"symbol":           regexp.MustCompile(`^` + sym + `{1,5}$`),
		"character_string": regexp.MustCompile(`^([0-9A-Za-z]|` + sym + `){1,32}$`),
		"time":             regexp.MustCompile(`^` + timeOne + `(\s*~\s*` + timeOne + `)?$`),
		"date":             regexp.MustCompile(`^` + dateOne + `(\s*~\s*` + dateOne + `)?$`),
		"amount":           regexp.MustCompile(`^\p{Sc}?\d{1,10}(\.\d{1,2})?元?$`),
		"phone_number":     regexp.MustCompile(`^[\d+\-() ]{1,17}$`),
		"car_number":       regexp.MustCompile(`^` + han + `?[A-Za-z0-9]{1,7}` + han + `?$`),
		"phrase":           regexp.MustCompile(`^` + han + `{1,5}$`),
		"name":             regexp.MustCompile(`^([A-Za-z ·.'-]{1,20}|[\p{Han}A-Za-z ·.'-]{1,10})$`),
	}
	typeOf = regexp.MustCompile(`^([a-z_]+?)\d*$`)
)

// checkData returns the values of data, or the errmsg detail naming the
// first bad field.
func checkData(data map[string]json.RawMessage, keys []string) (map[string]string, string) {
	out := map[string]string{}
	for _, k := range keys {
		if _, ok := data[k]; !ok {
			return nil, "data." + k + ".value is empty"
		}
	}
	for k, raw := range data {
		if keys != nil && !contains(keys, k) {
			return nil, "data." + k + " not exist"
		}
		var item struct {
			Value *string `json:"value"`
		}
		if err := json.Unmarshal(raw, &item); err != nil || item.Value == nil {
			return nil, "data." + k + ".value invalid"
		}
		v := *item.Value
		if v == "" {
			return nil, "data." + k + ".value is empty"
		}
		m := typeOf.FindStringSubmatch(k)
		typ := ""
		if m != nil {
			typ = m[1]
		}
		ok := true
		switch typ {
		case "thing":
			ok = utf8.RuneCountInString(v) <= 20 && !strings.ContainsAny(v, "\n\r\t")
		case "number":
			ok = valueRules[typ].MatchString(v) && len(strings.Replace(v, ".", "", 1)) <= 32
		case "car_number":
			ok = valueRules[typ].MatchString(v) && utf8.RuneCountInString(v) <= 8
		default:
			if re := valueRules[typ]; re != nil {
				ok = re.MatchString(v)
			}
		}
		if !ok {
			return nil, "data." + k + ".value invalid"
		}
		out[k] = v
	}
	return out, ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
