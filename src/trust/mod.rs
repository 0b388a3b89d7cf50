//! Trust: keys and signatures. So far only the OpenPGP key that signs the apt repositories
//! the appliance serves (`InRelease`, `Release.gpg`).

pub mod openpgp;
