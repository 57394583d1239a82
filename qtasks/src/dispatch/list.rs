//! Appending to a type-level list while keeping tuples flat: shared by
//! plugin chains ([`super::PluginChain`]) and task sets
//! ([`TaskSet`](crate::task::TaskSet)).

/// Appends one more plugin (or chain) to a chain, keeping tuples flat.
///
/// Tuples of up to 15 members grow by one; a 15-tuple becomes a 16-tuple
/// whose last member is a new tuple holding the rest.
pub trait Append<X> {
    /// The chain with `X` at the end.
    type Output;
    /// Appends `x`.
    fn append(self, x: X) -> Self::Output;
}

impl<X> Append<X> for () {
    type Output = (X,);
    fn append(self, x: X) -> (X,) {
        (x,)
    }
}

macro_rules! tuple_append {
    ($( ($($T:ident $i:tt),+) )+) => {$(
        impl<$($T,)+ X> Append<X> for ($($T,)+) {
            type Output = ($($T,)+ X);
            #[inline]
            fn append(self, x: X) -> Self::Output {
                ($(self.$i,)+ x)
            }
        }
    )+};
}

tuple_append! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13)
}

// A full chunk of 15 starts a nested chunk in the 16th slot.
impl<A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, X> Append<X> for (A, B, C, D, E, F, G, H, I, J, K, L, M, N, O) {
    type Output = (A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, (X,));
    #[inline]
    fn append(self, x: X) -> Self::Output {
        let (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o) = self;
        (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, (x,))
    }
}

// A 16-tuple appends into its nested rest.
impl<A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, R: Append<X>, X> Append<X>
    for (A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, R)
{
    type Output = (A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, R::Output);
    #[inline]
    fn append(self, x: X) -> Self::Output {
        let (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, r) = self;
        (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, r.append(x))
    }
}
