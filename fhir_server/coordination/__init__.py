"""The coordination domain on top of the generic server: rules that a CPTS or an MSP relies on
(task life cycle…), each in its own module, registered by the server's wiring
(`rules.register`) and checked on every write."""
