//! The element names of XML-RPC, and how they read in messages.

/// The elements XML-RPC knows, by local name (a namespace prefix is ignored,
/// as Python ignores it: `<ex:nil/>` is `<nil/>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tag {
    MethodCall,
    MethodResponse,
    MethodName,
    Params,
    Param,
    Fault,
    Value,
    Int,
    I4,
    I8,
    Boolean,
    String,
    Double,
    Base64,
    DateTime,
    Nil,
    Array,
    Data,
    Struct,
    Member,
    Name,
    /// Anything else; its name is kept in `Decoder::other` for messages.
    Other,
}

impl Tag {
    pub(super) fn classify(local_name: &[u8]) -> Tag {
        match local_name {
            b"methodCall" => Tag::MethodCall,
            b"methodResponse" => Tag::MethodResponse,
            b"methodName" => Tag::MethodName,
            b"params" => Tag::Params,
            b"param" => Tag::Param,
            b"fault" => Tag::Fault,
            b"value" => Tag::Value,
            b"int" => Tag::Int,
            b"i4" => Tag::I4,
            b"i8" => Tag::I8,
            b"boolean" => Tag::Boolean,
            b"string" => Tag::String,
            b"double" => Tag::Double,
            b"base64" => Tag::Base64,
            b"dateTime.iso8601" => Tag::DateTime,
            b"nil" => Tag::Nil,
            b"array" => Tag::Array,
            b"data" => Tag::Data,
            b"struct" => Tag::Struct,
            b"member" => Tag::Member,
            b"name" => Tag::Name,
            _ => Tag::Other,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Tag::MethodCall => "methodCall",
            Tag::MethodResponse => "methodResponse",
            Tag::MethodName => "methodName",
            Tag::Params => "params",
            Tag::Param => "param",
            Tag::Fault => "fault",
            Tag::Value => "value",
            Tag::Int => "int",
            Tag::I4 => "i4",
            Tag::I8 => "i8",
            Tag::Boolean => "boolean",
            Tag::String => "string",
            Tag::Double => "double",
            Tag::Base64 => "base64",
            Tag::DateTime => "dateTime.iso8601",
            Tag::Nil => "nil",
            Tag::Array => "array",
            Tag::Data => "data",
            Tag::Struct => "struct",
            Tag::Member => "member",
            Tag::Name => "name",
            Tag::Other => "?",
        }
    }
}

/// How an expected start tag reads in a message.
pub(super) fn opening(tag: Tag) -> &'static str {
    match tag {
        Tag::MethodCall => "<methodCall>",
        Tag::MethodResponse => "<methodResponse>",
        Tag::Param => "<param>",
        Tag::Value => "<value>",
        _ => "an element",
    }
}

/// How an expected end tag reads in a message.
pub(super) fn closing(tag: Tag) -> &'static str {
    match tag {
        Tag::MethodCall => "</methodCall>",
        Tag::MethodResponse => "</methodResponse>",
        Tag::MethodName => "</methodName>",
        Tag::Param => "</param>",
        Tag::Fault => "</fault>",
        Tag::Nil => "</nil>",
        Tag::Name => "</name>",
        Tag::Int => "</int>",
        Tag::I4 => "</i4>",
        Tag::I8 => "</i8>",
        Tag::Boolean => "</boolean>",
        Tag::String => "</string>",
        Tag::Double => "</double>",
        Tag::Base64 => "</base64>",
        Tag::DateTime => "</dateTime.iso8601>",
        _ => "an end tag",
    }
}
