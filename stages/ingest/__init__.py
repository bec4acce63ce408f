"""Sources that turn raw inputs into documents."""
