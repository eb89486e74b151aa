pub mod infotext;
pub mod request;
