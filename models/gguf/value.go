package gguf

import "fmt"

// ValueType is the type tag of a metadata value.
type ValueType uint32

// The GGUF metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

// size is the encoded size of a fixed-size value, 0 for strings and arrays.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// Value is one metadata value. V holds the Go value: uint8, int8, uint16,
// int16, uint32, int32, float32, bool, string, uint64, int64 or float64 for
// scalars; for an array (Type == TypeArray) Elem is the element type and V is
// a slice of that Go type ([]string, []float32, ...), or []Value when the
// elements are themselves arrays.
type Value struct {
	Type ValueType
	Elem ValueType
	V    any
}

// KV is one metadata entry, in file order.
type KV struct {
	Key   string
	Value Value
}

// Constructors for the writer and for tests.

func String(s string) Value      { return Value{Type: TypeString, V: s} }
func Uint32(x uint32) Value      { return Value{Type: TypeUint32, V: x} }
func Int32(x int32) Value        { return Value{Type: TypeInt32, V: x} }
func Uint64(x uint64) Value      { return Value{Type: TypeUint64, V: x} }
func Float32(x float32) Value    { return Value{Type: TypeFloat32, V: x} }
func Bool(x bool) Value          { return Value{Type: TypeBool, V: x} }
func Strings(x []string) Value   { return Value{Type: TypeArray, Elem: TypeString, V: x} }
func Float32s(x []float32) Value { return Value{Type: TypeArray, Elem: TypeFloat32, V: x} }
func Int32s(x []int32) Value     { return Value{Type: TypeArray, Elem: TypeInt32, V: x} }

// Len is the number of elements of an array value, 0 for a scalar.
func (v Value) Len() int {
	switch a := v.V.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	case []Value:
		return len(a)
	}
	return 0
}

// Int converts an integer scalar to int64.
func (v Value) Int() (int64, bool) {
	switch x := v.V.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint64:
		if x > 1<<63-1 {
			return 0, false
		}
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

// Float converts a numeric scalar to float64.
func (v Value) Float() (float64, bool) {
	switch x := v.V.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	if i, ok := v.Int(); ok {
		return float64(i), true
	}
	return 0, false
}

// Format renders the value for people, eliding long arrays after max elements.
func (v Value) Format(max int) string {
	if v.Type != TypeArray {
		if s, ok := v.V.(string); ok {
			return fmt.Sprintf("%q", s)
		}
		return fmt.Sprint(v.V)
	}
	n := v.Len()
	if n <= max {
		return fmt.Sprintf("%v", v.V)
	}
	return fmt.Sprintf("[%s × %d]", v.Elem, n)
}
