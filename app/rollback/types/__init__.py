"""One module per rollback type: each declares the type's facts once and registers itself
(``app.rollback.registry``), which imports every module here. Adding a type is adding a module
here (its steps may live in a module of their own under ``app/rollback/``) plus its tests."""
