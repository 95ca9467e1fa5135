"""Device descriptions: what each kind of meter or device holds and how it maps to OMDP.

Data and the loaders that validate it, shared by the edge (which reads meters with them) and
the cloud (whose OMDP catalogue lists them and which writes adapter config files):

- ``adapter_config``: the OMDP SmartMeterAdapterConfig (a meter's id and property mapping);
- ``profiles``: DLMS meter profiles, ``profiles/*.yaml``;
- ``modbus``: Modbus register maps, ``modbus/maps/*.yaml``, and the register data types;
- ``p1``: the default P1 (DSMR) property mappings.

Nothing here opens a socket, a port or a database: it reads the YAML shipped in this package
(or a file it is given) and returns validated pydantic models. It imports only ``broker``.
"""
