//! The fuzz targets' properties; see `checks`.

pub mod checks;
