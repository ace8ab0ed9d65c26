//! The id newtypes that index a snapshot's slices: a leaf module, so every part of the
//! config can name them without depending on the snapshot.

macro_rules! id_type {
    ($($name:ident),*) => {$(
        /// Index into the matching slice of a `Snapshot`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            pub fn idx(self) -> usize { self.0 as usize }
        }
    )*};
}
id_type!(RouteId, UpstreamId, ConsumerId, GroupId, CredentialId);
