package wechat

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestCheckDataRules: each of WeChat's value rules (订阅消息参数值内容限制)
// has values that pass and values that fail, and a failure names the key.
func TestCheckDataRules(t *testing.T) {
	cases := []struct {
		key   string
		value string
		ok    bool
	}{
		// thing: 20 characters of anything printable.
		{"thing1", "订单已经完成,请及时查看", true},
		{"thing1", strings.Repeat("字", 20), true},
		{"thing1", strings.Repeat("a", 20), true},
		{"thing1", strings.Repeat("字", 21), false},
		{"thing1", "", false},
		{"thing1", "two\nlines", false},
		// number: digits, an optional decimal point, 32 digits at most.
		{"number2", "339208499", true},
		{"number2", "3.50", true},
		{"number2", strings.Repeat("9", 32), true},
		{"number2", strings.Repeat("9", 31) + ".99", false},
		{"number2", "-3", false},
		{"number2", "1.", false},
		{"number2", "1e5", false},
		// letter: 32 letters.
		{"letter3", "ABCdef", true},
		{"letter3", strings.Repeat("z", 32), true},
		{"letter3", strings.Repeat("z", 33), false},
		{"letter3", "abc1", false},
		// symbol: 5 symbols.
		{"symbol4", "+-*/%", true},
		{"symbol4", "¥", true},
		{"symbol4", "!!!!!!", false},
		{"symbol4", "a!", false},
		// character_string: 32 digits, letters or symbols.
		{"character_string5", "AB-2022120853531009", true},
		{"character_string5", strings.Repeat("x", 32), true},
		{"character_string5", strings.Repeat("x", 33), false},
		{"character_string5", "订单123", false},
		// time: a 24-hour time, date optional, or a range.
		{"time6", "15:01", true},
		{"time6", "15:01:59", true},
		{"time6", "2019年10月1日 15:01", true},
		{"time6", "2019年10月1日15:01", true},
		{"time6", "2022-12-08 16:13:16", true},
		{"time6", "2019/10/01 9:05", true},
		{"time6", "15:01~16:30", true},
		{"time6", "2019年10月1日 15:01 ~ 2019年10月1日 18:00", true},
		{"time6", "25:00", false},
		{"time6", "15:1", false},
		{"time6", "2019年10月1日", false},
		{"time6", "tomorrow", false},
		// date: a date, time optional, or a range.
		{"date7", "2019年10月1日", true},
		{"date7", "2019年10月", true},
		{"date7", "10月1日", true},
		{"date7", "2018-01-01", true},
		{"date7", "2018/01/01", true},
		{"date7", "2018.01.01", true},
		{"date7", "2018-01", true},
		{"date7", "01-01", true},
		{"date7", "2019年10月1日 15:01", true},
		{"date7", "2019-10-01~2019-10-07", true},
		{"date7", "2019-13-01", false},
		{"date7", "2019-10/01", false},
		{"date7", "10月", false},
		{"date7", "15:01", false},
		{"date7", "19-10-01", false},
		// amount: a currency symbol, 10 digits, 2 decimals, a trailing 元.
		{"amount8", "9.90", true},
		{"amount8", "¥9.90", true},
		{"amount8", "$1234567890.99", true},
		{"amount8", "100元", true},
		{"amount8", "￥16000元", true},
		{"amount8", "12345678901", false},
		{"amount8", "9.999", false},
		{"amount8", "¥¥9", false},
		{"amount8", "9.90 USD", false},
		// phone_number: 17 digits and symbols.
		{"phone_number9", "+86-0766-66888866", true},
		{"phone_number9", "13800138000", true},
		{"phone_number9", "+86-0766-668888666", false},
		{"phone_number9", "call me", false},
		// car_number: 8, letters and digits, Chinese first and last.
		{"car_number10", "粤A8Z888挂", true},
		{"car_number10", "粤AD12345", true},
		{"car_number10", "粤AD123456", false},
		{"car_number10", "粤A-8Z888", false},
		{"car_number10", "粤中A888", false},
		// name: 10 Chinese characters, or 20 letters; no digits.
		{"name11", "张三", true},
		{"name11", "阿卜杜·热合曼", true},
		{"name11", "John Smith", true},
		{"name11", strings.Repeat("张", 11), false},
		{"name11", "张三abcdefghi", false},
		{"name11", strings.Repeat("a", 21), false},
		{"name11", "R2D2", false},
		// phrase: 5 Chinese characters.
		{"phrase12", "配送中", true},
		{"phrase12", "审核通过", true},
		{"phrase12", "正在配送途中", false},
		{"phrase12", "ok", false},
		// A type without a documented rule is checked by WeChat.
		{"enum13", "To be paid", true},
		{"enum13", strings.Repeat("x", 201), false},
	}
	for _, c := range cases {
		data, _ := json.Marshal(map[string]map[string]string{c.key: {"value": c.value}})
		err := CheckData(data)
		if c.ok && err != nil {
			t.Errorf("%s = %q: refused: %v", c.key, c.value, err)
		}
		if !c.ok {
			if err == nil {
				t.Errorf("%s = %q: accepted", c.key, c.value)
				continue
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeBadUserInput || !strings.Contains(e.Message, "notify.data."+c.key) {
				t.Errorf("%s = %q: error %v does not name the key as BAD_USER_INPUT", c.key, c.value, err)
			}
		}
	}
}

// TestCheckDataShape: the data object's shape.
func TestCheckDataShape(t *testing.T) {
	for _, c := range []struct {
		data string
		ok   bool
		want string // in the message
	}{
		{`{"thing1":{"value":"a"},"number2":{"value":12}}`, true, ""},
		{`{"thing1":{"value":"a"}}  `, true, ""},
		{`[]`, false, "must be an object"},
		{`{}`, false, "at least one key"},
		{`{"thing1":"a"}`, false, "notify.data.thing1"},
		{`{"thing1":{"value":true}}`, false, "notify.data.thing1.value"},
		{`{"thing1":{}}`, false, "notify.data.thing1"},
		{`{"thing1":{"value":"a","color":"#fff"}}`, false, `"color"`},
		{`{"thing1":{"value":"a"},"thing1":{"value":"b"}}`, false, "given twice"},
		{`{"Thing1":{"value":"a"}}`, false, "template keys"},
		{`{"thing1":{"value":"a"}} {}`, false, "one JSON object"},
		{`{"thing1":{"value":"a"}`, false, "invalid JSON"},
	} {
		err := CheckData(json.RawMessage(c.data))
		if c.ok != (err == nil) {
			t.Errorf("%s: err = %v, want ok = %v", c.data, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", c.data, err, c.want)
		}
	}
	// Numbers become strings: WeChat's values are strings.
	out, err := normalizeData(json.RawMessage(`{"number2": {"value": 12.5}}`))
	if err != nil || string(out) != `{"number2":{"value":"12.5"}}` {
		t.Fatalf("normalizeData = %s, %v", out, err)
	}
}
